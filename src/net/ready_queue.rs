//! The context's FIFO of ready handlers: a ring of slots whose capacity is a power of two.
//!
//! It does what `VecDeque` would, with less work per handler: the slot of the next push or
//! pop is found with a mask, a handler is written straight into its slot (no copy of the
//! record on the way), and it is run from its slot (only its result is copied out).

use std::cell::RefCell;
use std::mem::MaybeUninit;

use super::context::{IoHandler, Ready};

pub(crate) struct ReadyQueue {
    /// `slots.len()` is a power of two (or zero before the first push); slots
    /// `head .. head + len` (wrapping) hold handlers, the others nothing.
    slots: Box<[MaybeUninit<Ready>]>,
    head: usize,
    len: usize,
}

impl ReadyQueue {
    /// An empty queue with room for `capacity` handlers (rounded up to a power of two).
    pub(crate) fn with_capacity(capacity: usize) -> ReadyQueue {
        ReadyQueue {
            slots: empty_slots(capacity.next_power_of_two()),
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counts one more handler and returns its slot, which the caller must fill at once
    /// with [`write`](std::ptr::write), before the queue is used again.
    #[inline]
    pub(crate) fn push_slot(&mut self) -> *mut Ready {
        if self.len == self.slots.len() {
            self.grow();
        }
        let index = (self.head + self.len) & (self.slots.len() - 1);
        self.len += 1;
        self.slots[index].as_mut_ptr()
    }

    /// Uncounts the oldest handler and returns its slot, whose handler the caller now owns
    /// and must move out before the queue is pushed to again.
    #[inline]
    fn pop_slot(&mut self) -> Option<*mut Ready> {
        if self.len == 0 {
            return None;
        }
        let index = self.head;
        self.head = (index + 1) & (self.slots.len() - 1);
        self.len -= 1;
        Some(self.slots[index].as_mut_ptr())
    }

    /// Takes the oldest handler out.
    fn pop(&mut self) -> Option<Ready> {
        // SAFETY: the slot held a handler and is no longer part of the queue, so it is read
        // exactly once, here.
        self.pop_slot().map(|slot| unsafe { slot.read() })
    }

    /// Takes the oldest handler out of `queue` and runs it; false when the queue is empty.
    ///
    /// An I/O handler is run from its slot: only its result is copied out, and the handler
    /// moves out of the slot as it starts, before any of its code can queue more. The queue
    /// is not borrowed while the handler runs.
    #[inline]
    pub(crate) fn pop_and_run(queue: &RefCell<ReadyQueue>) -> bool {
        let Some(slot) = queue.borrow_mut().pop_slot() else {
            return false;
        };
        // SAFETY: the slot held the oldest handler and is no longer part of the queue, so
        // this is its only owner. Nothing can push (and so reuse or reallocate the slot)
        // before the handler has been moved out of it: the typed variants copy their parts
        // out first, and `IoHandler::call_in_place` moves the handler out before it runs.
        unsafe {
            match &mut *slot {
                Ready::Io(handler, result, n) => {
                    let (result, n) = (std::ptr::read(result), *n);
                    IoHandler::call_in_place(handler, result, n);
                }
                Ready::Fn(f) => std::ptr::read(f)(),
                Ready::Wait(handler, result) => {
                    let (handler, result) = (std::ptr::read(handler), std::ptr::read(result));
                    handler(result);
                }
            }
        }
        true
    }

    /// Doubles the ring, moving the handlers to its start in order.
    #[cold]
    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let mut slots = empty_slots(capacity);
        let mask = self.slots.len().wrapping_sub(1);
        for (i, slot) in slots.iter_mut().take(self.len).enumerate() {
            let from = (self.head + i) & mask;
            // SAFETY: slots `head .. head + len` (wrapping) hold handlers; each is moved to
            // the new ring once, and the old ring is then dropped as uninitialised memory.
            slot.write(unsafe { self.slots[from].assume_init_read() });
        }
        self.slots = slots;
        self.head = 0;
    }
}

fn empty_slots(capacity: usize) -> Box<[MaybeUninit<Ready>]> {
    std::iter::repeat_with(MaybeUninit::uninit)
        .take(capacity)
        .collect()
}

impl Default for ReadyQueue {
    fn default() -> ReadyQueue {
        ReadyQueue {
            slots: Box::new([]),
            head: 0,
            len: 0,
        }
    }
}

impl Drop for ReadyQueue {
    fn drop(&mut self) {
        while let Some(item) = self.pop() {
            drop(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<u32>>>;

    fn push_logging(queue: &RefCell<ReadyQueue>, log: &Log, n: u32) {
        let log = log.clone();
        let slot = queue.borrow_mut().push_slot();
        // SAFETY: a fresh slot, filled at once.
        unsafe { slot.write(Ready::Fn(Box::new(move || log.borrow_mut().push(n)))) };
    }

    #[test]
    fn handlers_run_in_order_across_wraps_and_growth() {
        let log = Log::default();
        let queue = RefCell::new(ReadyQueue::with_capacity(4));
        let mut pushed = 0;
        // Interleave pushes and runs so that the head wraps before the ring grows.
        for round in 0..40 {
            for _ in 0..(round % 7) + 1 {
                push_logging(&queue, &log, pushed);
                pushed += 1;
            }
            for _ in 0..(round % 5) {
                ReadyQueue::pop_and_run(&queue);
            }
        }
        while ReadyQueue::pop_and_run(&queue) {}
        assert_eq!(*log.borrow(), (0..pushed).collect::<Vec<_>>());
        assert!(queue.borrow().is_empty());
    }

    #[test]
    fn a_handler_may_queue_more_while_it_runs() {
        let log = Log::default();
        let queue = Rc::new(RefCell::new(ReadyQueue::with_capacity(1)));
        let (q, l) = (queue.clone(), log.clone());
        // The handler fills the ring past its capacity (it grows) while the handler's own
        // slot has just been given up.
        let slot = queue.borrow_mut().push_slot();
        // SAFETY: a fresh slot, filled at once.
        unsafe {
            slot.write(Ready::Io(
                IoHandler::new(move |r, n| {
                    assert_eq!((r, n), (Ok(()), 7));
                    for i in 1..=20 {
                        push_logging(&q, &l, i);
                    }
                }),
                Ok(()),
                7,
            ))
        };
        assert!(ReadyQueue::pop_and_run(&queue));
        assert_eq!(queue.borrow().len(), 20);
        while ReadyQueue::pop_and_run(&queue) {}
        assert_eq!(*log.borrow(), (1..=20).collect::<Vec<_>>());
        assert!(!ReadyQueue::pop_and_run(&queue));
    }

    #[test]
    fn dropping_the_queue_drops_its_handlers_uninvoked() {
        let log = Log::default();
        let queue = RefCell::new(ReadyQueue::default());
        for n in 0..20 {
            push_logging(&queue, &log, n);
        }
        assert!(ReadyQueue::pop_and_run(&queue));
        assert_eq!(queue.borrow().len(), 19);
        drop(queue);
        assert_eq!(*log.borrow(), vec![0]);
        assert_eq!(Rc::strong_count(&log), 1, "every capture was dropped");
    }
}
