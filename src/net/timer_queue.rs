//! The context's timers: a slab of slots and a min-heap of deadlines.
//!
//! Re-arming a timer to a later deadline (the common case: an idle timeout pushed back on
//! every message) touches no heap entry: the old entry surfaces first, sees the later expiry
//! and is pushed again once. Only arming to an earlier deadline adds an entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Weak;
use std::time::Instant;

use slab::Slab;

use super::context::{Inner, Ready, WaitHandler};

/// Something woken by an internal timer (no boxed handler per arm).
pub(crate) trait TimerTarget {
    /// The timer expired. Called from the run loop with no borrow held; must not run user
    /// handlers inline.
    fn on_timer(&self);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerKey {
    index: u32,
    generation: u32,
}

struct Slot {
    generation: u32,
    expiry: Option<Instant>,
    queued: Option<Instant>,
    waiters: Vec<WaitHandler>,
    target: Option<Weak<dyn TimerTarget>>,
}

#[derive(Default)]
pub(crate) struct TimerQueue {
    slots: Slab<Slot>,
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    next_generation: u32,
}

/// A timer that reached its expiry.
pub(crate) enum Expired {
    Waiters(Vec<WaitHandler>),
    Target(Weak<dyn TimerTarget>),
}

impl Expired {
    pub(crate) fn fire(self, inner: &Inner) {
        match self {
            Expired::Waiters(waiters) => {
                for h in waiters {
                    inner.finish_work();
                    inner.queue_ready(Ready::Wait(h, Ok(())));
                }
            }
            Expired::Target(target) => {
                if let Some(target) = target.upgrade() {
                    target.on_timer();
                }
            }
        }
    }
}

impl TimerQueue {
    pub(crate) fn create(
        &mut self,
        expiry: Option<Instant>,
        target: Option<Weak<dyn TimerTarget>>,
    ) -> TimerKey {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.slots.insert(Slot {
            generation,
            expiry,
            queued: None,
            waiters: Vec::new(),
            target,
        }) as u32;
        TimerKey { index, generation }
    }

    fn slot(&mut self, key: TimerKey) -> Option<&mut Slot> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)
    }

    /// Frees the slot; returns the waiters, which the caller completes as aborted.
    pub(crate) fn remove(&mut self, key: TimerKey) -> Vec<WaitHandler> {
        match self.slot(key) {
            Some(_) => self.slots.remove(key.index as usize).waiters,
            None => Vec::new(),
        }
    }

    /// Sets the expiry; returns the cancelled waiters (asio: changing the expiry cancels).
    pub(crate) fn set_expiry(
        &mut self,
        key: TimerKey,
        expiry: Option<Instant>,
    ) -> Vec<WaitHandler> {
        let Some(slot) = self.slot(key) else {
            return Vec::new();
        };
        slot.expiry = expiry;
        let cancelled = std::mem::take(&mut slot.waiters);
        self.schedule(key);
        cancelled
    }

    /// Re-arms an internal timer without touching waiters.
    pub(crate) fn arm(&mut self, key: TimerKey, expiry: Option<Instant>) {
        if let Some(slot) = self.slot(key) {
            slot.expiry = expiry;
            self.schedule(key);
        }
    }

    pub(crate) fn expiry(&mut self, key: TimerKey) -> Option<Instant> {
        self.slot(key).and_then(|s| s.expiry)
    }

    pub(crate) fn add_waiter(
        &mut self,
        key: TimerKey,
        handler: WaitHandler,
    ) -> Result<(), WaitHandler> {
        match self.slot(key) {
            Some(slot) => {
                slot.waiters.push(handler);
                self.schedule(key);
                Ok(())
            }
            None => Err(handler),
        }
    }

    pub(crate) fn cancel(&mut self, key: TimerKey) -> Vec<WaitHandler> {
        self.slot(key)
            .map(|s| std::mem::take(&mut s.waiters))
            .unwrap_or_default()
    }

    fn schedule(&mut self, key: TimerKey) {
        let Some(slot) = self.slot(key) else { return };
        let Some(expiry) = slot.expiry else { return };
        if slot.waiters.is_empty() && slot.target.is_none() {
            return;
        }
        if slot.queued.is_some_and(|q| q <= expiry) {
            return; // the queued entry surfaces first and re-queues itself
        }
        slot.queued = Some(expiry);
        self.heap.push(Reverse((expiry, key.index, key.generation)));
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _, _))| *t)
    }

    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Expired> {
        loop {
            let &Reverse((t, index, generation)) = self.heap.peek()?;
            if t > now {
                return None;
            }
            self.heap.pop();
            let key = TimerKey { index, generation };
            let Some(slot) = self.slot(key) else { continue };
            if slot.queued != Some(t) {
                continue; // superseded by an earlier entry
            }
            slot.queued = None;
            let Some(expiry) = slot.expiry else { continue };
            if expiry > now {
                self.schedule(key);
                continue;
            }
            if !slot.waiters.is_empty() {
                return Some(Expired::Waiters(std::mem::take(&mut slot.waiters)));
            }
            if let Some(target) = slot.target.clone() {
                slot.expiry = None;
                return Some(Expired::Target(target));
            }
        }
    }

    /// Empties the queue for shutdown; the returned handlers are dropped by the caller.
    pub(crate) fn take_all(&mut self) -> Vec<WaitHandler> {
        self.heap.clear();
        let mut all = Vec::new();
        for (_, slot) in self.slots.iter_mut() {
            all.append(&mut slot.waiters);
            slot.queued = None;
        }
        all
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}
