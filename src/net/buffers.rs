//! Buffers a context lends to its connections while they move bytes, so that a connection
//! holds no large buffer of its own while it is idle.
//!
//! A read buffer is lent while a connection parses what it read and given back when its
//! operations wait for more input; an output stage is lent while a connection has output
//! queued and given back once it is written. In steady state they go back and forth
//! without allocating.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// The size of a lent read buffer: the most bytes asked of the transport per read.
pub(crate) const READ_BUFFER_LEN: usize = 128 * 1024;

/// Free buffers kept per kind: enough for every connection served in one busy loop turn
/// of a typical server, bounded so that a burst does not pin memory for good.
const KEPT: usize = 64;

/// Output stages larger than this are freed rather than kept.
const STAGE_KEPT_MAX: usize = 256 * 1024;

/// The free buffers of one context.
#[derive(Default)]
pub(crate) struct Buffers {
    read: RefCell<Vec<Vec<u8>>>,
    /// Boxed as connections hold them, so that lending one moves a pointer.
    #[allow(clippy::vec_box)]
    outputs: RefCell<Vec<Box<OutputBufs>>>,
}

/// The buffers of a connection's queued output: shared chunks written without a copy, and
/// a stage of copied bytes (headers, short or masked payloads) around them.
///
/// The stage is one allocation that is never split: each chunk records how many staged
/// bytes go before it, and the staged bytes after the last chunk go last. Queuing a frame
/// thus never allocates once the stage has grown to the connection's usual output.
#[derive(Default)]
pub(crate) struct OutputBufs {
    /// The shared chunks in order, each with the count of staged bytes written before it.
    chunks: VecDeque<(usize, Bytes)>,
    /// The unwritten staged bytes, in order.
    stage: BytesMut,
    /// How many of the staged bytes go before some chunk (the sum of the counts in
    /// `chunks`); the rest follow every chunk.
    before_chunks: usize,
}

impl OutputBufs {
    /// The stage, to append copied bytes to.
    pub(crate) fn stage(&mut self) -> &mut BytesMut {
        &mut self.stage
    }

    /// Queues `chunk` after everything staged or queued so far.
    pub(crate) fn push_chunk(&mut self, chunk: Bytes) {
        let before = self.stage.len() - self.before_chunks;
        self.before_chunks += before;
        self.chunks.push_back((before, chunk));
    }

    /// The number of shared chunks queued.
    pub(crate) fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Fills `slices` with the queued bytes in order, as many pieces as fit; returns how
    /// many it filled. Output of staged bytes alone (small frames) takes one slice, inlined.
    #[inline(always)]
    pub(crate) fn gather<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        match slices.first_mut() {
            Some(first) if self.chunks.is_empty() => {
                *first = IoSlice::new(&self.stage);
                1
            }
            _ => self.gather_with_chunks(slices),
        }
    }

    /// [`gather`](OutputBufs::gather) when chunks are queued.
    fn gather_with_chunks<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        let mut at = 0;
        for (before, chunk) in &self.chunks {
            if *before > 0 {
                if count == slices.len() {
                    return count;
                }
                slices[count] = IoSlice::new(&self.stage[at..at + before]);
                count += 1;
                at += before;
            }
            if count == slices.len() {
                return count;
            }
            slices[count] = IoSlice::new(chunk);
            count += 1;
        }
        if at < self.stage.len() && count < slices.len() {
            slices[count] = IoSlice::new(&self.stage[at..]);
            count += 1;
        }
        count
    }

    /// Drops the first `n` bytes (written).
    pub(crate) fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some((before, front)) = self.chunks.front_mut() else {
                // Only staged bytes are left: all written leaves the stage's room as it is.
                if n >= self.stage.len() {
                    self.stage.clear();
                } else {
                    self.stage.advance(n);
                }
                break;
            };
            if *before > 0 {
                let k = n.min(*before);
                *before -= k;
                self.before_chunks -= k;
                self.stage.advance(k);
                n -= k;
            } else if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Empties the buffers, keeping the stage's allocation.
    fn clear(&mut self) {
        self.chunks.clear();
        self.stage.clear();
        self.before_chunks = 0;
    }
}

impl Buffers {
    /// A zero-initialised read buffer of [`READ_BUFFER_LEN`] bytes (initialised once, so
    /// that reads go straight into it, never zero-filled again).
    pub(crate) fn take_read(&self) -> Vec<u8> {
        self.read
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0; READ_BUFFER_LEN])
    }

    /// Takes a read buffer back (a grown one is freed).
    pub(crate) fn give_read(&self, buf: Vec<u8>) {
        let mut free = self.read.borrow_mut();
        if buf.len() == READ_BUFFER_LEN && free.len() < KEPT {
            free.push(buf);
        }
    }

    /// Empty output buffers, with the capacity they had when they were given back.
    pub(crate) fn take_output(&self) -> Box<OutputBufs> {
        self.outputs.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes output buffers back; their contents are discarded.
    pub(crate) fn give_output(&self, mut bufs: Box<OutputBufs>) {
        bufs.clear();
        let mut free = self.outputs.borrow_mut();
        if bufs.stage.capacity() <= STAGE_KEPT_MAX && free.len() < KEPT {
            free.push(bufs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffers_are_reused_and_grown_ones_freed() {
        let buffers = Buffers::default();
        let mut a = buffers.take_read();
        assert_eq!(a.len(), READ_BUFFER_LEN);
        a[0] = 7;
        let ptr = a.as_ptr();
        buffers.give_read(a);
        let b = buffers.take_read();
        assert_eq!(b.as_ptr(), ptr, "the same allocation comes back");
        let mut grown = b;
        grown.resize(2 * READ_BUFFER_LEN, 0);
        buffers.give_read(grown);
        assert!(buffers.read.borrow().is_empty());
    }

    /// Writes everything queued in `bufs`, at most `write` bytes and `slots` slices a time.
    fn drain(bufs: &mut OutputBufs, slots: usize, write: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut slices = vec![IoSlice::new(&[]); slots];
            let count = bufs.gather(&mut slices);
            let all: Vec<u8> = slices[..count].iter().flat_map(|s| s.to_vec()).collect();
            if all.is_empty() {
                return out;
            }
            let n = all.len().min(write);
            out.extend_from_slice(&all[..n]);
            bufs.consume(n);
        }
    }

    #[test]
    fn staged_bytes_and_chunks_go_out_in_order_in_any_pieces() {
        for slots in [1, 2, 3, 4, 64] {
            for write in [1, 2, 3, 5, 7, 100] {
                let mut bufs = OutputBufs::default();
                let mut expected = Vec::new();
                for i in 0..5u8 {
                    // Staged bytes before a chunk, none before the next, and a tail.
                    let staged = [b'a' + i; 3];
                    bufs.stage().extend_from_slice(&staged);
                    expected.extend_from_slice(&staged);
                    let chunk = Bytes::from(vec![b'0' + i; 4]);
                    expected.extend_from_slice(&chunk);
                    bufs.push_chunk(chunk);
                    let next = Bytes::from(vec![b'A' + i; 2]);
                    expected.extend_from_slice(&next);
                    bufs.push_chunk(next);
                }
                bufs.stage().extend_from_slice(b"tail");
                expected.extend_from_slice(b"tail");
                let out = drain(&mut bufs, slots, write);
                assert_eq!(out, expected, "{slots} slots, {write} bytes a write");
                assert_eq!(bufs.before_chunks, 0);
                assert!(bufs.chunks.is_empty() && bufs.stage.is_empty());
            }
        }
    }

    #[test]
    fn bytes_staged_while_others_are_half_written_keep_their_place() {
        let mut bufs = OutputBufs::default();
        bufs.stage().extend_from_slice(b"h1");
        bufs.push_chunk(Bytes::from_static(b"payload"));
        bufs.stage().extend_from_slice(b"t1");
        bufs.consume(4); // "h1" and "pa"
        bufs.stage().extend_from_slice(b"h2");
        bufs.push_chunk(Bytes::from_static(b"second"));
        bufs.consume(7); // "yload" and "t1"
        bufs.stage().extend_from_slice(b"end");
        assert_eq!(drain(&mut bufs, 64, 3), b"h2secondend");
        // A staged frame grows the same allocation again, from its start.
        let ptr = bufs.stage.as_ptr();
        bufs.stage().extend_from_slice(b"x");
        assert_eq!(bufs.stage.as_ptr(), ptr);
    }

    #[test]
    fn output_buffers_come_back_empty_with_their_capacity() {
        let buffers = Buffers::default();
        let mut o = buffers.take_output();
        o.stage().extend_from_slice(&[1; 100]);
        o.push_chunk(Bytes::from_static(b"shared"));
        buffers.give_output(o);
        let o = buffers.take_output();
        assert!(o.stage.is_empty() && o.chunks.is_empty() && o.before_chunks == 0);
        assert!(o.stage.capacity() >= 100);
    }
}
