//! The stream's read buffer: bytes read from the transport and not parsed yet.
//!
//! While the stream parses, it reads into a large buffer lent by its context; when its
//! operations wait for more input it gives that buffer back and keeps only the unparsed
//! bytes (a partial frame) in a small allocation of its own. An idle connection therefore
//! holds a few bytes at most, and no read zero-fills anything: a lent buffer was
//! initialised once, when its context allocated it.

use crate::net::buffers::{Buffers, READ_BUFFER_LEN};

/// Unparsed bytes: `buf[start..end]`. Every byte of `buf` is initialised.
#[derive(Default)]
pub(crate) struct ReadBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The unparsed bytes.
    #[inline]
    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The unparsed bytes, for unmasking in place.
    #[inline]
    pub(crate) fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as parsed.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Drops every unparsed byte.
    #[inline]
    pub(crate) fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Appends bytes (read by the application before the handshake).
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// True while the buffer is one lent by the context (or grown past it).
    #[inline]
    pub(crate) fn is_lent(&self) -> bool {
        self.buf.len() >= READ_BUFFER_LEN
    }

    /// Room after the unparsed bytes to read into: borrows the context's buffer when only a
    /// small one of our own is held, and moves the unparsed bytes to its front.
    #[inline]
    pub(crate) fn spare(&mut self, buffers: &Buffers) -> &mut [u8] {
        if !self.is_lent() {
            let mut lent = buffers.take_read();
            let len = self.len();
            if len > 0 {
                if len > lent.len() {
                    lent.resize(len, 0);
                }
                lent[..len].copy_from_slice(self.data());
            }
            self.buf = lent;
            self.start = 0;
            self.end = len;
        }
        if self.end == self.buf.len() {
            self.make_room(READ_BUFFER_LEN / 2);
        }
        &mut self.buf[self.end..]
    }

    /// Makes `n` bytes read into [`spare`](ReadBuffer::spare) part of the unparsed bytes.
    #[inline]
    pub(crate) fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.buf.len());
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Gives a lent buffer back to the context; unparsed bytes move to an allocation of our
    /// own, of their exact size (none when there are none).
    pub(crate) fn give_back(&mut self, buffers: &Buffers) {
        if !self.is_lent() {
            return;
        }
        let own = if self.is_empty() {
            Vec::new()
        } else {
            self.data().to_vec()
        };
        self.end = own.len();
        self.start = 0;
        buffers.give_read(std::mem::replace(&mut self.buf, own));
    }

    /// Ensures `n` bytes of room after the unparsed bytes: moves them to the front first,
    /// and grows the buffer only when that is not enough.
    fn make_room(&mut self, n: usize) {
        if self.buf.len() - self.end >= n {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < n {
            self.buf.resize(self.end + n, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_buffer_goes_back_and_only_the_unparsed_bytes_stay() {
        let buffers = Buffers::default();
        let mut rb = ReadBuffer::default();
        rb.extend_from_slice(b"ab");
        let spare = rb.spare(&buffers);
        spare[..3].copy_from_slice(b"cde");
        rb.commit(3);
        assert!(rb.is_lent());
        assert_eq!(rb.data(), b"abcde");
        rb.advance(4);
        rb.give_back(&buffers);
        assert!(!rb.is_lent());
        assert_eq!(rb.data(), b"e");
        assert_eq!(rb.buf.capacity(), 1, "exactly the partial frame is kept");
        rb.advance(1);
        rb.give_back(&buffers);
        assert_eq!(rb.buf.capacity(), 1);
        rb.spare(&buffers);
        rb.give_back(&buffers);
        assert_eq!(
            rb.buf.capacity(),
            0,
            "nothing is kept when nothing is unparsed"
        );
    }

    #[test]
    fn a_full_lent_buffer_compacts_or_grows() {
        let buffers = Buffers::default();
        let mut rb = ReadBuffer::default();
        let n = rb.spare(&buffers).len();
        rb.commit(n);
        rb.advance(10);
        assert!(rb.spare(&buffers).len() >= 10, "compacted");
        assert_eq!(rb.len(), n - 10);
        let m = rb.spare(&buffers).len();
        rb.commit(m);
        assert!(!rb.spare(&buffers).is_empty(), "grown");
        assert_eq!(rb.len(), n - 10 + m);
        assert!(rb.data().iter().all(|&b| b == 0));
    }
}
