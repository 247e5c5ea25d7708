//! The byte buffers of a TLS stream: TLS bytes read from the next layer (decrypted in place
//! by rustls), encrypted bytes waiting for the next layer, and plaintext decrypted ahead of
//! a read. Idle streams hold none of them: drained buffers go back to a small per-thread
//! pool.

use std::cell::RefCell;

/// Bytes one read of the next layer may bring at most.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The largest TLS record on the wire: 16 KiB of plaintext plus the most any cipher adds
/// (TLS 1.2 allows 2 KiB of expansion) and the 5-byte header.
pub(crate) const MAX_RECORD: usize = 16 * 1024 + 2048 + 5;

/// The fixed size of an input buffer: one read of the next layer plus a partial record
/// kept from the previous one; a handshake message split over records (at most 64 KiB)
/// fits too. Hostile input never grows it.
const INPUT_SIZE: usize = READ_CHUNK + 2 * MAX_RECORD;

/// Buffers of each kind kept per thread for the next stream that needs one.
const POOLED: usize = 16;

/// The largest buffer the pool keeps (an output buffer grown past the default output
/// limit is freed), so that a thread's pool holds at most a few MiB.
const POOLED_SIZE: usize = 256 * 1024 + 4 * MAX_RECORD;

thread_local! {
    static INPUT_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static OUTPUT_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// Where frames smaller than a record are gathered to share one: encryption runs to
    /// the end before it returns, so one buffer serves every stream of the thread.
    static STAGING: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The thread's staging buffer (empty if a caller up the stack holds it).
pub(crate) fn take_staging() -> Vec<u8> {
    STAGING.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

/// Gives the staging buffer back for the next write.
pub(crate) fn give_staging(buf: Vec<u8>) {
    STAGING.with(|s| *s.borrow_mut() = buf);
}

fn take_from(pool: &'static Pool) -> Vec<u8> {
    pool.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

fn give_to(pool: &'static Pool, buf: Vec<u8>) {
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOLED && buf.len() <= POOLED_SIZE {
            p.push(buf);
        }
    });
}

type Pool = std::thread::LocalKey<RefCell<Vec<Vec<u8>>>>;

/// Gives a buffer with nothing left in `start..end` back to `pool`.
fn release_if_drained(buf: &mut Vec<u8>, start: &mut usize, end: &mut usize, pool: &'static Pool) {
    if start == end {
        *start = 0;
        *end = 0;
        if !buf.is_empty() {
            give_to(pool, std::mem::take(buf));
        }
    }
}

/// TLS bytes from the next layer: `buf[start..end]` is what rustls has not discarded yet
/// (complete records not yet decrypted, or the start of one).
#[derive(Default)]
pub(crate) struct Input {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Input {
    /// The bytes rustls is to look at next.
    pub(crate) fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Drops `n` bytes rustls is done with from the front; a drained buffer goes back to
    /// the pool.
    pub(crate) fn discard(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        release_if_drained(&mut self.buf, &mut self.start, &mut self.end, &INPUT_POOL);
    }

    /// Room for the next read of the next layer: the kept bytes move to the front when the
    /// tail is short. `None` when the buffer is full of bytes rustls still needs (a record
    /// or handshake message larger than TLS allows).
    pub(crate) fn spare_mut(&mut self) -> Option<&mut [u8]> {
        if self.buf.is_empty() {
            self.buf = take_from(&INPUT_POOL);
            self.buf.resize(INPUT_SIZE, 0);
        }
        if self.buf.len() - self.end < READ_CHUNK && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return None;
        }
        Some(&mut self.buf[self.end..])
    }

    /// Records that `n` bytes were read into [`spare_mut`](Input::spare_mut).
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

/// Encrypted bytes for the next layer: `buf[start..end]` is still to be written.
#[derive(Default)]
pub(crate) struct Output {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Output {
    /// Bytes waiting for the next layer.
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as written; a drained buffer goes back to the pool.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        release_if_drained(&mut self.buf, &mut self.start, &mut self.end, &OUTPUT_POOL);
    }

    /// At least `n` writable bytes after the pending ones (the caller bounds `n`).
    pub(crate) fn spare_mut(&mut self, n: usize) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = take_from(&OUTPUT_POOL);
        }
        if self.buf.len() - self.end < n {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() - self.end < n {
                let len = (self.end + n).max(2 * self.buf.len()).max(READ_CHUNK);
                self.buf.resize(len, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were written into [`spare_mut`](Output::spare_mut).
    pub(crate) fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }
}

/// Plaintext decrypted before the reader asked for it (a record larger than the reader's
/// buffer, or records met while writing). Bounded by the input buffer it came from.
#[derive(Default)]
pub(crate) struct Stash {
    buf: Vec<u8>,
    start: usize,
}

impl Stash {
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    pub(crate) fn push(&mut self, plaintext: &[u8]) {
        self.buf.extend_from_slice(plaintext);
    }

    /// Moves what fits into `dst`; returns the bytes moved.
    pub(crate) fn take_into(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.buf.len() - self.start);
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.is_empty() {
            self.buf = Vec::new();
            self.start = 0;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_keeps_unread_bytes_and_refuses_to_grow() {
        let mut input = Input::default();
        let room = input.spare_mut().unwrap().len();
        assert_eq!(room, INPUT_SIZE);
        input.filled(room);
        assert!(input.spare_mut().is_none());
        input.discard(room - 3);
        assert_eq!(input.spare_mut().unwrap().len(), INPUT_SIZE - 3);
        assert_eq!(input.pending_mut().len(), 3);
        input.discard(3);
        assert!(input.pending_mut().is_empty());
    }

    #[test]
    fn output_grows_on_demand_and_compacts() {
        let mut out = Output::default();
        out.spare_mut(10)[..10].copy_from_slice(b"0123456789");
        out.filled(10);
        out.consume(4);
        assert_eq!(out.pending(), b"456789");
        let big = out.spare_mut(200_000).len();
        assert!(big >= 200_000);
        assert_eq!(out.pending(), b"456789");
        out.consume(6);
        assert!(out.pending().is_empty());
    }

    #[test]
    fn the_pool_keeps_drained_buffers_but_not_oversized_ones() {
        let pooled = || OUTPUT_POOL.with(|p| p.borrow().len());
        let mut out = Output::default();
        out.spare_mut(1000);
        out.filled(1000);
        out.consume(1000);
        assert_eq!(pooled(), 1);
        let mut big = Output::default();
        big.spare_mut(1000);
        assert_eq!(pooled(), 0, "taken from the pool");
        big.spare_mut(2 * POOLED_SIZE);
        big.filled(10);
        big.consume(10);
        assert_eq!(pooled(), 0, "too large to keep");
    }

    #[test]
    fn stash_hands_out_in_order() {
        let mut s = Stash::default();
        s.push(b"hello");
        let mut two = [0u8; 2];
        assert_eq!(s.take_into(&mut two), 2);
        assert_eq!(&two, b"he");
        let mut rest = [0u8; 8];
        assert_eq!(s.take_into(&mut rest), 3);
        assert!(s.is_empty());
    }
}
