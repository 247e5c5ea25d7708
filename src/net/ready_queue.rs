//! The context's FIFO of ready handlers: a ring of slots whose capacity is a power of two.
//!
//! It does what `VecDeque` would, with less work per handler: the slot of the next push or
//! pop is found with a mask, a handler is written straight into its slot (no copy of the
//! record on the way), and it is run from its slot (only its result is copied out). It needs
//! no `RefCell`: no method keeps a borrow of the ring past its return, and none runs a
//! handler while it uses the ring, so every access is alone.

use std::cell::{Cell, UnsafeCell};
use std::mem::{self, MaybeUninit};

use super::context::{IoHandler, Ready};

pub(crate) struct ReadyQueue {
    /// `slots.len()` is a power of two (or zero before the first push); slots
    /// `head .. head + len` (wrapping) hold handlers, the others nothing. Only this module's
    /// methods touch it, each with a borrow that ends before it returns.
    slots: UnsafeCell<Box<[MaybeUninit<Ready>]>>,
    head: Cell<usize>,
    len: Cell<usize>,
}

/// [`ReadyQueue::grow`] behind a boundary that a panic cannot cross (it aborts, as running
/// out of memory does anyway), so that a push needs no unwinding path that would drop the
/// record it is about to write.
#[cold]
#[inline(never)]
extern "C" fn grow_without_unwinding(queue: &ReadyQueue) {
    queue.grow();
}

impl ReadyQueue {
    /// An empty queue with room for `capacity` handlers (rounded up to a power of two).
    pub(crate) fn with_capacity(capacity: usize) -> ReadyQueue {
        ReadyQueue::from_ring(empty_slots(capacity.next_power_of_two()), 0, 0)
    }

    /// A queue over `slots`, of which `head .. head + len` (wrapping) hold handlers.
    fn from_ring(slots: Box<[MaybeUninit<Ready>]>, head: usize, len: usize) -> ReadyQueue {
        ReadyQueue {
            slots: UnsafeCell::new(slots),
            head: Cell::new(head),
            len: Cell::new(len),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len.get() == 0
    }

    /// The number of slots.
    #[inline(always)]
    fn capacity(&self) -> usize {
        // SAFETY: a shared read of the ring, which no method holds borrowed across calls.
        unsafe { (&*self.slots.get()).len() }
    }

    /// A pointer to slot `index` (masked to the ring, which must not be empty).
    #[inline(always)]
    fn slot(&self, index: usize) -> *mut Ready {
        // SAFETY: as in `capacity`; `index & (capacity - 1)` is within the ring.
        unsafe {
            let slots = &mut *self.slots.get();
            let index = index & (slots.len() - 1);
            slots.as_mut_ptr().add(index).cast()
        }
    }

    /// Counts one more handler and returns its slot, which the caller must fill at once
    /// with [`write`](std::ptr::write), before the queue is used again.
    #[inline]
    pub(crate) fn push_slot(&self) -> *mut Ready {
        let len = self.len.get();
        if len == self.capacity() {
            grow_without_unwinding(self);
        }
        self.len.set(len + 1);
        self.slot(self.head.get() + len)
    }

    /// Uncounts the oldest handler and returns its slot, whose handler the caller now owns
    /// and must move out before the queue is pushed to again.
    #[inline]
    fn pop_slot(&self) -> Option<*mut Ready> {
        let len = self.len.get();
        if len == 0 {
            return None;
        }
        let head = self.head.get();
        self.head.set((head + 1) & (self.capacity() - 1));
        self.len.set(len - 1);
        Some(self.slot(head))
    }

    /// Takes the oldest handler out.
    fn pop(&self) -> Option<Ready> {
        // SAFETY: the slot held a handler and is no longer part of the queue, so it is read
        // exactly once, here.
        self.pop_slot().map(|slot| unsafe { slot.read() })
    }

    /// Takes the oldest handler out and runs it; false when the queue is empty.
    ///
    /// An I/O handler is run from its slot: only its result is copied out, and the handler
    /// moves out of the slot as it starts, before any of its code can queue more.
    #[inline]
    pub(crate) fn pop_and_run(&self) -> bool {
        let Some(slot) = self.pop_slot() else {
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

    /// Moves every handler out into a new queue, leaving this one empty.
    pub(crate) fn take_all(&self) -> ReadyQueue {
        // SAFETY: as in `capacity`; the ring is moved out whole with its bookkeeping.
        let slots = mem::take(unsafe { &mut *self.slots.get() });
        ReadyQueue::from_ring(slots, self.head.replace(0), self.len.replace(0))
    }

    /// Doubles the ring, moving the handlers to its start in order.
    #[cold]
    fn grow(&self) {
        // SAFETY: as in `capacity`: nothing else borrows the ring while this replaces it.
        let old = unsafe { &mut *self.slots.get() };
        let capacity = (old.len() * 2).max(16);
        let mut slots = empty_slots(capacity);
        let mask = old.len().wrapping_sub(1);
        let (head, len) = (self.head.get(), self.len.get());
        for (i, slot) in slots.iter_mut().take(len).enumerate() {
            let from = (head + i) & mask;
            // SAFETY: slots `head .. head + len` (wrapping) hold handlers; each is moved to
            // the new ring once, and the old ring is then dropped as uninitialised memory.
            slot.write(unsafe { old[from].assume_init_read() });
        }
        *old = slots;
        self.head.set(0);
    }
}

fn empty_slots(capacity: usize) -> Box<[MaybeUninit<Ready>]> {
    std::iter::repeat_with(MaybeUninit::uninit)
        .take(capacity)
        .collect()
}

impl Default for ReadyQueue {
    fn default() -> ReadyQueue {
        ReadyQueue::from_ring(Box::new([]), 0, 0)
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
    use std::cell::RefCell;
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<u32>>>;

    fn push_logging(queue: &ReadyQueue, log: &Log, n: u32) {
        let log = log.clone();
        let slot = queue.push_slot();
        // SAFETY: a fresh slot, filled at once.
        unsafe { slot.write(Ready::Fn(Box::new(move || log.borrow_mut().push(n)))) };
    }

    #[test]
    fn handlers_run_in_order_across_wraps_and_growth() {
        let log = Log::default();
        let queue = ReadyQueue::with_capacity(4);
        let mut pushed = 0;
        // Interleave pushes and runs so that the head wraps before the ring grows.
        for round in 0..40 {
            for _ in 0..(round % 7) + 1 {
                push_logging(&queue, &log, pushed);
                pushed += 1;
            }
            for _ in 0..(round % 5) {
                queue.pop_and_run();
            }
        }
        while queue.pop_and_run() {}
        assert_eq!(*log.borrow(), (0..pushed).collect::<Vec<_>>());
        assert!(queue.is_empty());
    }

    #[test]
    fn a_handler_may_queue_more_while_it_runs() {
        let log = Log::default();
        let queue = Rc::new(ReadyQueue::with_capacity(1));
        let (q, l) = (queue.clone(), log.clone());
        // The handler fills the ring past its capacity (it grows) while the handler's own
        // slot has just been given up.
        let slot = queue.push_slot();
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
        assert!(queue.pop_and_run());
        assert_eq!(queue.len(), 20);
        while queue.pop_and_run() {}
        assert_eq!(*log.borrow(), (1..=20).collect::<Vec<_>>());
        assert!(!queue.pop_and_run());
    }

    #[test]
    fn dropping_the_queue_drops_its_handlers_uninvoked() {
        let log = Log::default();
        let queue = ReadyQueue::default();
        for n in 0..20 {
            push_logging(&queue, &log, n);
        }
        assert!(queue.pop_and_run());
        assert_eq!(queue.len(), 19);
        drop(queue);
        assert_eq!(*log.borrow(), vec![0]);
        assert_eq!(Rc::strong_count(&log), 1, "every capture was dropped");
    }

    #[test]
    fn take_all_moves_the_handlers_out_in_order_and_leaves_a_usable_queue() {
        let log = Log::default();
        let queue = ReadyQueue::with_capacity(2);
        for n in 0..5 {
            push_logging(&queue, &log, n);
        }
        queue.pop_and_run();
        let taken = queue.take_all();
        assert!(queue.is_empty());
        assert_eq!(taken.len(), 4);
        push_logging(&queue, &log, 9);
        while taken.pop_and_run() {}
        assert!(queue.pop_and_run());
        assert_eq!(*log.borrow(), vec![0, 1, 2, 3, 4, 9]);
    }
}
