//! Buffers a context lends to its connections while they move bytes, so that a connection
//! holds no large buffer of its own while it is idle.
//!
//! A read buffer is lent while a connection parses what it read and given back when its
//! operations wait for more input; an output stage is lent while a connection has output
//! queued and given back once it is written. In steady state they go back and forth
//! without allocating.

use std::cell::RefCell;
use std::collections::VecDeque;

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
/// a stage of copied bytes that follows them.
#[derive(Default)]
pub(crate) struct OutputBufs {
    pub(crate) chunks: VecDeque<Bytes>,
    pub(crate) stage: BytesMut,
}

impl OutputBufs {
    /// Drops the first `n` bytes (written).
    pub(crate) fn consume(&mut self, mut n: usize) {
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    if front.len() <= n {
                        n -= front.len();
                        self.chunks.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
                None => {
                    if n >= self.stage.len() {
                        // From its start again: the allocation keeps its whole capacity.
                        self.stage.clear();
                    } else {
                        self.stage.advance(n);
                    }
                    n = 0;
                }
            }
        }
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
        bufs.chunks.clear();
        bufs.stage.clear();
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

    #[test]
    fn output_buffers_come_back_empty_with_their_capacity() {
        let buffers = Buffers::default();
        let mut o = buffers.take_output();
        o.stage.extend_from_slice(&[1; 100]);
        o.chunks.push_back(Bytes::from_static(b"shared"));
        buffers.give_output(o);
        let o = buffers.take_output();
        assert!(o.stage.is_empty() && o.chunks.is_empty());
        assert!(o.stage.capacity() >= 100);
    }
}
