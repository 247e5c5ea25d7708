//! Buffers a context lends to its connections while they move bytes, so that a connection
//! holds no large buffer of its own while it is idle.
//!
//! A read buffer is lent while a connection parses what it read and given back when its
//! operations wait for more input; an output stage is lent while a connection has output
//! queued and given back once it is written. In steady state they go back and forth
//! without allocating.

use std::cell::RefCell;

use bytes::BytesMut;

/// The size of a lent read buffer: the most bytes asked of the transport per read.
pub(crate) const READ_BUFFER_LEN: usize = 64 * 1024;

/// Free buffers kept per kind: enough for every connection served in one busy loop turn
/// of a typical server, bounded so that a burst does not pin memory for good.
const KEPT: usize = 64;

/// Output stages larger than this are freed rather than kept.
const STAGE_KEPT_MAX: usize = 256 * 1024;

/// The free buffers of one context.
#[derive(Default)]
pub(crate) struct Buffers {
    read: RefCell<Vec<Vec<u8>>>,
    stages: RefCell<Vec<BytesMut>>,
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

    /// An empty output stage, with the capacity it had when it was given back.
    pub(crate) fn take_stage(&self) -> BytesMut {
        self.stages.borrow_mut().pop().unwrap_or_default()
    }

    /// Takes an output stage back; its contents are discarded.
    pub(crate) fn give_stage(&self, mut stage: BytesMut) {
        stage.clear();
        let mut free = self.stages.borrow_mut();
        if stage.capacity() > 0 && stage.capacity() <= STAGE_KEPT_MAX && free.len() < KEPT {
            free.push(stage);
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
    fn stages_come_back_empty_with_their_capacity() {
        let buffers = Buffers::default();
        let mut s = buffers.take_stage();
        s.extend_from_slice(&[1; 100]);
        buffers.give_stage(s);
        let s = buffers.take_stage();
        assert!(s.is_empty());
        assert!(s.capacity() >= 100);
    }
}
