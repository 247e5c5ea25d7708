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
    /// The timer with `tag` expired (the tag given to [`InternalTimer::tagged`], telling an
    /// object's timers apart; 0 for [`InternalTimer::new`]). Called from the run loop with
    /// no borrow held; must not run user handlers inline.
    ///
    /// [`InternalTimer::tagged`]: super::timer::InternalTimer::tagged
    /// [`InternalTimer::new`]: super::timer::InternalTimer::new
    fn on_timer(&self, tag: u8);
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
    owner: Owner,
}

/// Who hears of an expiry: the waits of a `SteadyTimer`, or the object of an internal timer.
enum Owner {
    Waiters(Vec<WaitHandler>),
    Target(Weak<dyn TimerTarget>, u8),
}

impl Slot {
    /// Takes the pending waits out (none for an internal timer).
    fn take_waiters(&mut self) -> Vec<WaitHandler> {
        match &mut self.owner {
            Owner::Waiters(waiters) => std::mem::take(waiters),
            Owner::Target(..) => Vec::new(),
        }
    }

    /// True when an expiry would reach someone.
    fn is_awaited(&self) -> bool {
        match &self.owner {
            Owner::Waiters(waiters) => !waiters.is_empty(),
            Owner::Target(..) => true,
        }
    }
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
    Target(Weak<dyn TimerTarget>, u8),
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
            Expired::Target(target, tag) => {
                if let Some(target) = target.upgrade() {
                    target.on_timer(tag);
                }
            }
        }
    }
}

impl TimerQueue {
    pub(crate) fn create(
        &mut self,
        expiry: Option<Instant>,
        target: Option<(Weak<dyn TimerTarget>, u8)>,
    ) -> TimerKey {
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.slots.insert(Slot {
            generation,
            expiry,
            queued: None,
            owner: match target {
                Some((target, tag)) => Owner::Target(target, tag),
                None => Owner::Waiters(Vec::new()),
            },
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
            Some(_) => self.slots.remove(key.index as usize).take_waiters(),
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
        let cancelled = slot.take_waiters();
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
        match self.slot(key).map(|slot| &mut slot.owner) {
            Some(Owner::Waiters(waiters)) => {
                waiters.push(handler);
                self.schedule(key);
                Ok(())
            }
            _ => Err(handler),
        }
    }

    pub(crate) fn cancel(&mut self, key: TimerKey) -> Vec<WaitHandler> {
        self.slot(key).map(Slot::take_waiters).unwrap_or_default()
    }

    fn schedule(&mut self, key: TimerKey) {
        let Some(slot) = self.slot(key) else { return };
        let Some(expiry) = slot.expiry else { return };
        if !slot.is_awaited() {
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
            match &mut slot.owner {
                Owner::Waiters(waiters) if !waiters.is_empty() => {
                    return Some(Expired::Waiters(std::mem::take(waiters)));
                }
                Owner::Waiters(_) => {}
                Owner::Target(target, tag) => {
                    let target = target.clone();
                    slot.expiry = None;
                    return Some(Expired::Target(target, *tag));
                }
            }
        }
    }

    /// Empties the queue for shutdown; the returned handlers are dropped by the caller.
    pub(crate) fn take_all(&mut self) -> Vec<WaitHandler> {
        self.heap.clear();
        let mut all = Vec::new();
        for (_, slot) in self.slots.iter_mut() {
            all.append(&mut slot.take_waiters());
            slot.queued = None;
        }
        all
    }

    #[cfg(test)]
    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}
