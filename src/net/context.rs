//! `IoContext`: the reactor and its run loop (asio's `io_context`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use super::buffers::Buffers;
use super::executor::{Executor, Remote, Task};
use super::readiness::Readiness;
use super::ready_queue::ReadyQueue;
use super::timer_queue::TimerQueue;
use crate::Error;

/// The mio token of the cross-thread waker.
const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

/// Events taken from the OS per poll.
const EVENTS_PER_POLL: usize = 1024;

/// Rounds of ready handlers (each round the handlers the previous one queued) per loop turn.
const BATCHES_PER_TURN: usize = 16;

/// Cross-thread tasks run per loop turn, so that a flood from other threads cannot starve
/// local I/O.
const REMOTE_TASKS_PER_TURN: usize = 4096;

/// The default bound of the cross-thread queue (see [`IoContext::with_post_capacity`]).
pub const DEFAULT_POST_CAPACITY: usize = 65_536;

pub(crate) use super::inline_op::IoHandler;
/// A handler completing a wait or any operation without a size.
pub(crate) type WaitHandler = Box<dyn FnOnce(Result<(), Error>)>;

/// A completion waiting in the ready queue. The typed variants carry the result next to
/// the handler so that completing an operation needs no allocation of its own (an I/O
/// handler is kept inline when small).
pub(crate) enum Ready {
    Fn(Box<dyn FnOnce()>),
    Io(IoHandler, Result<(), Error>, usize),
    Wait(WaitHandler, Result<(), Error>),
}

/// An object registered with the reactor: readiness events for its token are delivered to it,
/// and it drops every handler it parks when the context shuts down.
pub(crate) trait IoObject {
    /// Readiness arrived (from the OS or from an in-memory peer). Called from the run loop
    /// with no borrow of the context held. Must not run user handlers: completions are queued.
    fn on_ready(&self, readiness: Readiness);
    /// The context is shutting down: drop every parked handler uninvoked.
    fn on_shutdown(&self);
}

/// Identifies a registered object; the generation makes a stale token harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IoToken {
    index: u32,
    generation: u32,
}

impl IoToken {
    pub(crate) fn mio_token(self) -> mio::Token {
        mio::Token(((self.generation as usize) << 32) | self.index as usize)
    }

    fn from_mio(token: mio::Token) -> IoToken {
        IoToken {
            index: token.0 as u32,
            generation: (token.0 >> 32) as u32,
        }
    }
}

struct Registration {
    generation: u32,
    object: Weak<dyn IoObject>,
}

/// Something that asked to be flushed once the current batch of handlers has run (the
/// "cork" of corked writes).
pub(crate) trait Flush {
    fn flush(&self);
}

pub(crate) struct Inner {
    poll: RefCell<mio::Poll>,
    registry: mio::Registry,
    ready: ReadyQueue,
    objects: RefCell<Slab<Registration>>,
    next_generation: Cell<u32>,
    signals: RefCell<Vec<(IoToken, Readiness)>>,
    /// The emptied vector of the last batch of signals, reused so that a turn does not
    /// allocate.
    signals_spare: RefCell<Vec<(IoToken, Readiness)>>,
    /// Streams to flush at the end of this turn, in the order they asked.
    flushes: RefCell<VecDeque<Rc<dyn Flush>>>,
    /// Flushes held back to the end of the next turn.
    held_flushes: RefCell<VecDeque<Rc<dyn Flush>>>,
    /// The OS event buffer, kept between polls.
    events: RefCell<Option<mio::Events>>,
    pub(crate) timers: RefCell<TimerQueue>,
    /// Buffers lent to connections while they move bytes.
    pub(crate) buffers: Buffers,
    /// Outstanding operations and local work guards.
    work: Cell<usize>,
    stopped: Cell<bool>,
    shut_down: Cell<bool>,
    depth: Cell<u32>,
    /// The clock read when the current loop turn's events came in (see [`Handle::now`]).
    turn_now: Cell<Instant>,
    remote: Arc<Remote>,
    tasks: crossbeam_channel::Receiver<Task>,
    /// Handlers parked for another thread, each with the generation that its key carries,
    /// so that a late completion for a taken slot never reaches the slot's next tenant.
    remote_slots: RefCell<Slab<(u32, RemoteSlot)>>,
}

type RemoteSlot = Box<dyn FnOnce(Box<dyn std::any::Any + Send>)>;

/// A cheap, clonable handle to an [`IoContext`], for the context's own thread.
///
/// I/O objects are created from a handle, and handlers capture handles to start more work.
/// A handle does not keep the context running: when its [`IoContext`] is dropped, every
/// parked handler is dropped uninvoked and later operations are dropped at once.
///
/// ```
/// use rbeast::net::IoContext;
/// let ctx = IoContext::new().unwrap();
/// let handle = ctx.handle().clone();
/// handle.post(|| println!("ran"));
/// assert_eq!(ctx.run(), 1);
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Rc<Inner>,
}

/// The reactor: our port of asio's `io_context`.
///
/// It owns a `mio::Poll`, the registered I/O objects, a FIFO queue of ready handlers, the
/// timers and a count of outstanding work. One context runs on one thread; for many cores
/// use one context per thread ([`ContextPool`](crate::net::ContextPool)).
///
/// Dropping the context drops every parked handler uninvoked, which breaks the reference
/// cycles of sessions whose handlers capture themselves.
///
/// ```
/// use rbeast::net::IoContext;
/// let ctx = IoContext::new().unwrap();
/// let h = ctx.handle().clone();
/// ctx.post(move || h.post(|| println!("second")));
/// assert_eq!(ctx.run(), 2);
/// ```
pub struct IoContext {
    handle: Handle,
}

impl IoContext {
    /// Creates a context with the default cross-thread queue bound.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert_eq!(ctx.run(), 0);
    /// ```
    pub fn new() -> io::Result<IoContext> {
        IoContext::with_post_capacity(DEFAULT_POST_CAPACITY)
    }

    /// Creates a context whose cross-thread queue holds at most `capacity` tasks; beyond it
    /// [`Executor::post`] fails with [`Error::PostQueueFull`]. The capacity is a bound, not
    /// a reservation: the queue allocates as tasks flow.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::with_post_capacity(16).unwrap();
    /// # drop(ctx);
    /// ```
    pub fn with_post_capacity(capacity: usize) -> io::Result<IoContext> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let inner = Inner {
            poll: RefCell::new(poll),
            registry,
            ready: ReadyQueue::with_capacity(64),
            objects: RefCell::new(Slab::new()),
            next_generation: Cell::new(1),
            signals: RefCell::new(Vec::new()),
            signals_spare: RefCell::new(Vec::new()),
            flushes: RefCell::new(VecDeque::new()),
            held_flushes: RefCell::new(VecDeque::new()),
            events: RefCell::new(None),
            timers: RefCell::new(TimerQueue::default()),
            buffers: Buffers::default(),
            work: Cell::new(0),
            stopped: Cell::new(false),
            shut_down: Cell::new(false),
            depth: Cell::new(0),
            turn_now: Cell::new(Instant::now()),
            remote: Arc::new(Remote::new(tx, waker, capacity.max(1))),
            tasks: rx,
            remote_slots: RefCell::new(Slab::new()),
        };
        Ok(IoContext {
            handle: Handle {
                inner: Rc::new(inner),
            },
        })
    }

    /// The local handle of this context.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let h = ctx.handle().clone();
    /// # drop(h);
    /// ```
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs handlers until no work is left or [`stop`](Handle::stop) is called; returns the
    /// number of handlers run.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// ctx.post(|| {});
    /// assert_eq!(ctx.run(), 1);
    /// ```
    pub fn run(&self) -> usize {
        self.handle.inner.run_loop(usize::MAX, None, true)
    }

    /// Runs at most one handler, blocking until one is ready or no work is left.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// ctx.post(|| {});
    /// ctx.post(|| {});
    /// assert_eq!(ctx.run_one(), 1);
    /// assert_eq!(ctx.run_one(), 1);
    /// assert_eq!(ctx.run_one(), 0);
    /// ```
    pub fn run_one(&self) -> usize {
        self.handle.inner.run_loop(1, None, true)
    }

    /// Runs every handler that is ready, without blocking.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// ctx.post(|| {});
    /// assert_eq!(ctx.poll(), 1);
    /// ```
    pub fn poll(&self) -> usize {
        self.handle.inner.run_loop(usize::MAX, None, false)
    }

    /// Runs at most one ready handler, without blocking.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert_eq!(ctx.poll_one(), 0);
    /// ```
    pub fn poll_one(&self) -> usize {
        self.handle.inner.run_loop(1, None, false)
    }

    /// Runs handlers until no work is left, `stop` is called, or `duration` has passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let _guard = ctx.executor().work_guard();
    /// assert_eq!(ctx.run_for(Duration::from_millis(5)), 0);
    /// ```
    pub fn run_for(&self, duration: Duration) -> usize {
        let deadline = Instant::now() + duration;
        self.handle.inner.run_loop(usize::MAX, Some(deadline), true)
    }

    /// Clears the stopped state so that the `run` functions work again.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// ctx.stop();
    /// assert!(ctx.stopped());
    /// ctx.restart();
    /// assert!(!ctx.stopped());
    /// ```
    pub fn restart(&self) {
        self.handle.inner.stopped.set(false);
        self.handle.inner.remote.stop.store(false, Ordering::SeqCst);
    }
}

impl std::ops::Deref for IoContext {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for IoContext {
    fn drop(&mut self) {
        self.handle.inner.shutdown();
    }
}

impl Handle {
    /// Queues `f` to run on the context's thread, after the handlers already queued.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// ctx.post(|| println!("hello"));
    /// assert_eq!(ctx.run(), 1);
    /// ```
    pub fn post(&self, f: impl FnOnce() + 'static) {
        self.inner.push(Ready::Fn(Box::new(f)));
    }

    /// Runs `f` at once when called from inside a handler of this context; otherwise queues
    /// it as [`post`](Handle::post) does.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let h = ctx.handle().clone();
    /// let ran = Rc::new(Cell::new(false));
    /// let r = ran.clone();
    /// ctx.post(move || {
    ///     h.dispatch(move || r.set(true));
    /// });
    /// assert_eq!(ctx.run(), 1); // the dispatched function ran inline
    /// assert!(ran.get());
    /// ```
    pub fn dispatch(&self, f: impl FnOnce() + 'static) {
        if self.inner.depth.get() > 0 && !self.inner.shut_down.get() {
            f();
        } else {
            self.post(f);
        }
    }

    /// A `Send + Clone` handle that posts work to this context from any thread.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let ex = ctx.executor();
    /// std::thread::spawn(move || ex.post(|| println!("from afar")).unwrap()).join().unwrap();
    /// assert_eq!(ctx.run(), 1);
    /// ```
    pub fn executor(&self) -> Executor {
        Executor::new(self.inner.remote.clone())
    }

    /// Asks the `run` functions to return as soon as possible; queued handlers stay queued.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let h = ctx.handle().clone();
    /// ctx.post(move || h.stop());
    /// ctx.post(|| {});
    /// assert_eq!(ctx.run(), 1);
    /// ```
    pub fn stop(&self) {
        self.inner.stopped.set(true);
    }

    /// True when the context was stopped and not restarted.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert!(!ctx.stopped());
    /// ```
    pub fn stopped(&self) -> bool {
        self.inner.stopped.get() || self.inner.remote.stop.load(Ordering::SeqCst)
    }

    /// True when both handles refer to the same context.
    ///
    /// ```
    /// let a = rbeast::net::IoContext::new().unwrap();
    /// let b = rbeast::net::IoContext::new().unwrap();
    /// assert!(a.handle().same_context(&a.handle().clone()));
    /// assert!(!a.handle().same_context(b.handle()));
    /// ```
    pub fn same_context(&self, other: &Handle) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    // ---- crate-internal reactor services ----

    /// The time for arming timers from handlers: inside the run loop, the clock read once
    /// per loop turn when its events came in (so that a busy turn reads the clock once, not
    /// once per handler); outside it, the clock itself.
    pub(crate) fn now(&self) -> Instant {
        if self.inner.depth.get() > 0 {
            self.inner.turn_now.get()
        } else {
            Instant::now()
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.inner.shut_down.get()
    }

    /// The buffers this context lends to its connections.
    pub(crate) fn buffers(&self) -> &Buffers {
        &self.inner.buffers
    }

    pub(crate) fn registry(&self) -> &mio::Registry {
        &self.inner.registry
    }

    /// Registers an object for readiness delivery.
    pub(crate) fn register(&self, object: Weak<dyn IoObject>) -> IoToken {
        let generation = self.inner.next_generation.get();
        self.inner
            .next_generation
            .set(generation.wrapping_add(1).max(1));
        let index = self
            .inner
            .objects
            .borrow_mut()
            .insert(Registration { generation, object });
        IoToken {
            index: index as u32,
            generation,
        }
    }

    /// Removes a registration; a stale token is ignored.
    pub(crate) fn deregister(&self, token: IoToken) {
        let mut objects = self.inner.objects.borrow_mut();
        let index = token.index as usize;
        if objects.get(index).map(|r| r.generation) == Some(token.generation) {
            // The Weak is dropped here; dropping a Weak runs no user code.
            objects.remove(index);
        }
    }

    /// Delivers readiness to an object from the run loop (never inline). A signal for the
    /// object signalled last joins that one, so that many writes to one in-memory peer in
    /// a turn queue one wake-up.
    pub(crate) fn signal(&self, token: IoToken, readiness: Readiness) {
        let mut signals = self.inner.signals.borrow_mut();
        match signals.last_mut() {
            Some((last, queued)) if *last == token => *queued = *queued | readiness,
            _ => signals.push((token, readiness)),
        }
    }

    /// Asks for `target.flush()` once the current batch of handlers has run (the cork of
    /// corked writes: one vectored write per connection per loop turn).
    pub(crate) fn defer_flush(&self, target: Rc<dyn Flush>) {
        self.inner.flushes.borrow_mut().push_back(target);
    }

    /// Asks for `target.flush()` at the end of the next turn instead of this one (a
    /// connection whose reads keep completing from buffered input holds its output, so that
    /// the replies to several messages leave in one write).
    pub(crate) fn defer_flush_next_turn(&self, target: Rc<dyn Flush>) {
        self.inner.held_flushes.borrow_mut().push_back(target);
    }

    /// Counts an operation as outstanding work (keeps `run` running).
    pub(crate) fn work_started(&self) {
        self.inner.work.set(self.inner.work.get() + 1);
    }

    /// Ends an outstanding operation without queueing a handler.
    pub(crate) fn work_finished(&self) {
        self.inner.work.set(self.inner.work.get().saturating_sub(1));
    }

    /// Completes an outstanding operation: queues its handler with the result.
    pub(crate) fn complete_io(&self, handler: IoHandler, result: Result<(), Error>, n: usize) {
        self.work_finished();
        self.inner.push(Ready::Io(handler, result, n));
    }

    /// Completes an outstanding wait-style operation.
    pub(crate) fn complete_wait(&self, handler: WaitHandler, result: Result<(), Error>) {
        self.work_finished();
        self.inner.push(Ready::Wait(handler, result));
    }

    /// Completes an outstanding operation with an arbitrary closure.
    pub(crate) fn complete_fn(&self, f: Box<dyn FnOnce()>) {
        self.work_finished();
        self.inner.push(Ready::Fn(f));
    }

    /// Posts an I/O handler that never became outstanding work (an operation rejected at
    /// initiation): it still runs from the queue, never inline.
    pub(crate) fn post_io(&self, handler: IoHandler, result: Result<(), Error>, n: usize) {
        self.inner.push(Ready::Io(handler, result, n));
    }

    /// Posts a wait handler that never became outstanding work.
    pub(crate) fn post_wait(&self, handler: WaitHandler, result: Result<(), Error>) {
        self.inner.push(Ready::Wait(handler, result));
    }

    /// Parks `handler` until another thread completes it through the returned sender.
    /// Counts as outstanding work until then.
    pub(crate) fn park_remote<T: Send + 'static>(
        &self,
        handler: Box<dyn FnOnce(T)>,
    ) -> RemoteCompletion<T> {
        let slot: RemoteSlot = Box::new(move |value: Box<dyn std::any::Any + Send>| {
            if let Ok(value) = value.downcast::<T>() {
                handler(*value)
            }
        });
        let generation = self.inner.next_generation.get();
        self.inner
            .next_generation
            .set(generation.wrapping_add(1).max(1));
        let index = self
            .inner
            .remote_slots
            .borrow_mut()
            .insert((generation, slot));
        let key = ((generation as usize) << 32) | index;
        self.work_started();
        RemoteCompletion {
            remote: self.inner.remote.clone(),
            key,
            _value: std::marker::PhantomData,
        }
    }

    /// Takes a parked remote handler back (for cancellation); the late value is then ignored.
    pub(crate) fn take_remote(&self, key: usize) -> Option<RemoteSlot> {
        let slot = self.inner.take_remote_slot(key);
        if slot.is_some() {
            self.work_finished();
        }
        slot
    }
}

/// The sending side of a handler parked with [`Handle::park_remote`].
pub(crate) struct RemoteCompletion<T> {
    remote: Arc<Remote>,
    pub(crate) key: usize,
    _value: std::marker::PhantomData<fn(T)>,
}

impl<T: Send + 'static> RemoteCompletion<T> {
    /// Sends the value; the handler runs on the context's thread.
    pub(crate) fn complete(self, value: T) {
        // The remote-completion path is not bounded by the post capacity: it carries a
        // result the context is already waiting for, and dropping it would lose a handler.
        let _ = self
            .remote
            .send_unbounded(Task::Complete(self.key, Box::new(value)));
    }
}

/// After shutdown nothing runs: a handler queued then is dropped (outside any borrow).
#[cold]
#[inline(never)]
fn drop_after_shutdown(item: Ready) {
    drop(item);
}

impl Inner {
    #[inline]
    fn push(&self, item: Ready) {
        if self.shut_down.get() {
            drop_after_shutdown(item);
            return;
        }
        let slot = self.ready.push_slot();
        // SAFETY: the slot is the queue's new last one, empty; nothing uses the queue
        // between its reservation and this write.
        unsafe { slot.write(item) };
    }

    fn has_work(&self) -> bool {
        self.work.get() > 0
            || !self.ready.is_empty()
            || !self.signals.borrow().is_empty()
            || !self.flushes.borrow().is_empty()
            || !self.held_flushes.borrow().is_empty()
            || self.remote.work.load(Ordering::SeqCst) > 0
            || !self.tasks.is_empty()
    }

    fn is_stopped(&self) -> bool {
        self.stopped.get() || self.remote.stop.load(Ordering::SeqCst)
    }

    /// The run loop behind `run`, `run_one`, `poll`, `poll_one` and `run_for`.
    fn run_loop(&self, limit: usize, deadline: Option<Instant>, block: bool) -> usize {
        if self.shut_down.get() {
            return 0;
        }
        self.depth.set(self.depth.get() + 1);
        let _depth = DepthGuard(&self.depth);
        self.turn_now.set(Instant::now());
        let mut count = 0;
        loop {
            if self.is_stopped() {
                return count;
            }
            // Flushes held back by the last turn run at the end of this one.
            if !self.held_flushes.borrow().is_empty() {
                let mut held = self.held_flushes.borrow_mut();
                self.flushes.borrow_mut().append(&mut held);
            }
            // Run the handlers that are ready now, then those they queued, for a few rounds
            // (a read's handler starts a write whose handler starts the next read): polling
            // the OS between such rounds would cost a system call for nothing. The bound
            // keeps I/O polled between batches, so that a chain of posts cannot starve it.
            for _ in 0..BATCHES_PER_TURN {
                let batch = self.ready.len();
                if batch == 0 {
                    break;
                }
                // A stop from another thread is seen between batches; one from a handler
                // (this thread) before the next handler.
                if self.is_stopped() {
                    return count;
                }
                for _ in 0..batch {
                    if count == limit || self.stopped.get() {
                        return count;
                    }
                    if !self.ready.pop_and_run() {
                        break;
                    }
                    count += 1;
                }
            }
            self.run_flushes();
            if count == limit || self.is_stopped() {
                return count;
            }
            if !self.has_work() {
                return count;
            }
            // Cross-thread tasks left over from a full turn have no wake-up on the way (the
            // `notified` flag suppresses it), so they too forbid sleeping.
            let busy = !self.ready.is_empty()
                || !self.signals.borrow().is_empty()
                || !self.held_flushes.borrow().is_empty()
                || self.remote_pending();
            let now = Instant::now();
            if let Some(d) = deadline {
                if now >= d {
                    return count;
                }
            }
            let timeout = if busy || !block {
                Some(Duration::ZERO)
            } else {
                let next_timer = self.timers.borrow().next_deadline();
                [next_timer, deadline]
                    .into_iter()
                    .flatten()
                    .min()
                    .map(|t| t.saturating_duration_since(now))
            };
            let progressed = self.poll_io(timeout);
            let fired = self.fire_timers();
            if !block && !progressed && !fired && self.ready.is_empty() {
                return count;
            }
        }
    }

    /// Polls the OS and delivers readiness; returns true when anything was delivered.
    fn poll_io(&self, timeout: Option<Duration>) -> bool {
        // Taken out (not borrowed) for the duration, so that nothing here holds a borrow
        // while objects run; put back at the end.
        let mut events = self
            .events
            .borrow_mut()
            .take()
            .unwrap_or_else(|| mio::Events::with_capacity(EVENTS_PER_POLL));
        let polled = self.poll.borrow_mut().poll(&mut events, timeout);
        // The turn's time: the events, the timers due and the handlers of this turn use it.
        self.turn_now.set(Instant::now());
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                // A failing epoll descriptor cannot recover; surface it loudly.
                panic!("mio poll failed: {e}");
            }
        }
        let mut progressed = false;
        let mut woken = false;
        for event in events.iter() {
            if event.token() == WAKER_TOKEN {
                woken = true;
                continue;
            }
            progressed = true;
            self.deliver(
                IoToken::from_mio(event.token()),
                Readiness::from_event(event),
            );
        }
        if woken || self.remote_pending() {
            progressed |= self.run_remote_tasks();
        }
        *self.events.borrow_mut() = Some(events);
        progressed |= self.deliver_signals();
        progressed
    }

    fn deliver(&self, token: IoToken, readiness: Readiness) {
        let object = {
            let objects = self.objects.borrow();
            match objects.get(token.index as usize) {
                Some(r) if r.generation == token.generation => r.object.upgrade(),
                _ => None,
            }
        };
        if let Some(object) = object {
            object.on_ready(readiness);
        }
    }

    fn deliver_signals(&self) -> bool {
        if self.signals.borrow().is_empty() {
            return false;
        }
        let mut delivered = false;
        loop {
            let mut signals = std::mem::take(&mut *self.signals_spare.borrow_mut());
            std::mem::swap(&mut signals, &mut *self.signals.borrow_mut());
            if signals.is_empty() {
                *self.signals_spare.borrow_mut() = signals;
                return delivered;
            }
            delivered = true;
            for (token, readiness) in signals.drain(..) {
                self.deliver(token, readiness);
            }
            *self.signals_spare.borrow_mut() = signals;
        }
    }

    fn run_flushes(&self) {
        // One at a time, so that no borrow is held while a stream flushes; flushes asked for
        // meanwhile run in this loop too.
        loop {
            let Some(target) = self.flushes.borrow_mut().pop_front() else {
                return;
            };
            target.flush();
        }
    }

    /// True when cross-thread tasks may be waiting without a wake-up on the way: the
    /// `notified` flag is set from a send until the run loop takes the tasks, and set again
    /// when it leaves some for the next turn. (A task sent but not yet flagged has its
    /// wake-up on the way.) Cheaper than looking at the channel on every turn.
    fn remote_pending(&self) -> bool {
        self.remote.notified.load(Ordering::SeqCst)
    }

    /// Moves cross-thread tasks into the ready queue.
    fn run_remote_tasks(&self) -> bool {
        self.remote.notified.store(false, Ordering::SeqCst);
        let mut any = false;
        for _ in 0..REMOTE_TASKS_PER_TURN {
            let task = match self.tasks.try_recv() {
                Ok(task) => task,
                Err(_) => break,
            };
            any = true;
            match task {
                Task::Post(f) => {
                    self.remote.took_post();
                    self.push(Ready::Fn(Box::new(f)));
                }
                Task::Complete(key, value) => {
                    let slot = self.take_remote_slot(key);
                    if let Some(slot) = slot {
                        self.work.set(self.work.get().saturating_sub(1));
                        self.push(Ready::Fn(Box::new(move || slot(value))));
                    }
                }
            }
        }
        if !self.tasks.is_empty() {
            // More than one turn's worth: come back without sleeping.
            self.remote.notified.store(true, Ordering::SeqCst);
        }
        any
    }

    /// Removes the parked remote handler of `key`, unless the slot was taken (cancelled)
    /// and has a new tenant since.
    fn take_remote_slot(&self, key: usize) -> Option<RemoteSlot> {
        let (index, generation) = (key & 0xFFFF_FFFF, (key >> 32) as u32);
        let mut slots = self.remote_slots.borrow_mut();
        match slots.get(index) {
            Some((g, _)) if *g == generation => Some(slots.remove(index).1),
            _ => None,
        }
    }

    fn fire_timers(&self) -> bool {
        let now = self.turn_now.get();
        let mut fired = false;
        loop {
            let expired = self.timers.borrow_mut().pop_expired(now);
            let Some(expired) = expired else {
                return fired;
            };
            fired = true;
            expired.fire(self);
        }
    }

    pub(crate) fn finish_work(&self) {
        self.work.set(self.work.get().saturating_sub(1));
    }

    pub(crate) fn queue_ready(&self, item: Ready) {
        self.push(item);
    }

    /// Drops every parked handler and queued task, breaking reference cycles.
    fn shutdown(&self) {
        self.stopped.set(true);
        self.shut_down.set(true);
        // Repeat until nothing is left: dropping a handler can drop objects that park or
        // queue more (for example a timer whose drop cancels a wait).
        for _ in 0..64 {
            let ready = self.ready.take_all();
            let objects: Vec<Rc<dyn IoObject>> = self
                .objects
                .borrow()
                .iter()
                .filter_map(|(_, r)| r.object.upgrade())
                .collect();
            let timers = self.timers.borrow_mut().take_all();
            let mut flushes = std::mem::take(&mut *self.flushes.borrow_mut());
            flushes.append(&mut self.held_flushes.borrow_mut());
            let signals = std::mem::take(&mut *self.signals.borrow_mut());
            let remote_slots = std::mem::take(&mut *self.remote_slots.borrow_mut());
            let tasks: Vec<Task> = self.tasks.try_iter().collect();
            for task in &tasks {
                if let Task::Post(_) = task {
                    self.remote.took_post();
                }
            }
            let empty = ready.is_empty()
                && timers.is_empty()
                && flushes.is_empty()
                && remote_slots.is_empty()
                && tasks.is_empty();
            for object in &objects {
                object.on_shutdown();
            }
            drop((ready, timers, flushes, signals, remote_slots, tasks));
            drop(objects);
            if empty {
                break;
            }
        }
        self.work.set(0);
    }
}

struct DepthGuard<'a>(&'a Cell<u32>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{SteadyTimer, TcpStream};
    use std::cell::RefCell;

    fn log() -> Rc<RefCell<Vec<u32>>> {
        Rc::new(RefCell::new(Vec::new()))
    }

    #[test]
    fn handlers_run_in_fifo_order_and_are_counted() {
        let ctx = IoContext::new().unwrap();
        let seen = log();
        for i in 0..100 {
            let s = seen.clone();
            ctx.post(move || s.borrow_mut().push(i));
        }
        assert_eq!(ctx.run(), 100);
        assert_eq!(*seen.borrow(), (0..100).collect::<Vec<_>>());
        assert_eq!(ctx.run(), 0);
    }

    #[test]
    fn handlers_posted_by_handlers_run_after_those_already_queued() {
        let ctx = IoContext::new().unwrap();
        let seen = log();
        let (h, s1, s2) = (ctx.handle().clone(), seen.clone(), seen.clone());
        ctx.post(move || {
            s1.borrow_mut().push(1);
            let s = s1.clone();
            h.post(move || s.borrow_mut().push(3));
        });
        ctx.post(move || s2.borrow_mut().push(2));
        assert_eq!(ctx.run(), 3);
        assert_eq!(*seen.borrow(), vec![1, 2, 3]);
    }

    #[test]
    fn dispatch_is_inline_inside_and_posted_outside() {
        let ctx = IoContext::new().unwrap();
        let seen = log();
        let s = seen.clone();
        ctx.dispatch(move || s.borrow_mut().push(1)); // outside: posted
        assert!(seen.borrow().is_empty());
        let (h, s) = (ctx.handle().clone(), seen.clone());
        ctx.post(move || {
            let s2 = s.clone();
            h.dispatch(move || s2.borrow_mut().push(2));
            s.borrow_mut().push(3); // runs after the inline dispatch
        });
        ctx.run();
        assert_eq!(*seen.borrow(), vec![1, 2, 3]);
    }

    #[test]
    fn stop_returns_early_and_restart_resumes() {
        let ctx = IoContext::new().unwrap();
        let h = ctx.handle().clone();
        ctx.post(move || h.stop());
        ctx.post(|| {});
        assert_eq!(ctx.run(), 1);
        assert!(ctx.stopped());
        assert_eq!(ctx.run(), 0, "a stopped context runs nothing");
        ctx.restart();
        assert_eq!(ctx.run(), 1);
    }

    #[test]
    fn stop_from_the_last_handler_returns_without_waiting_for_io() {
        let ctx = IoContext::new().unwrap();
        // Pending work that never completes by itself.
        let t = SteadyTimer::new(&ctx);
        t.expires_after(Duration::from_secs(3600));
        t.async_wait(|_| {});
        let h = ctx.handle().clone();
        ctx.post(move || h.stop());
        assert_eq!(ctx.run(), 1);
    }

    #[test]
    fn run_one_and_poll_one_run_exactly_one() {
        let ctx = IoContext::new().unwrap();
        for _ in 0..3 {
            ctx.post(|| {});
        }
        assert_eq!(ctx.poll_one(), 1);
        assert_eq!(ctx.run_one(), 1);
        assert_eq!(ctx.poll(), 1);
        assert_eq!(ctx.poll(), 0);
    }

    #[test]
    fn poll_does_not_block_on_pending_work() {
        let ctx = IoContext::new().unwrap();
        let t = SteadyTimer::new(&ctx);
        t.expires_after(Duration::from_secs(3600));
        t.async_wait(|_| {});
        assert_eq!(ctx.poll(), 0);
        assert_eq!(t.cancel(), 1);
        assert_eq!(ctx.poll(), 1);
    }

    #[test]
    fn run_for_returns_at_the_deadline_with_work_pending() {
        let ctx = IoContext::new().unwrap();
        let t = SteadyTimer::new(&ctx);
        t.expires_after(Duration::from_secs(3600));
        t.async_wait(|_| {});
        let start = Instant::now();
        assert_eq!(ctx.run_for(Duration::from_millis(20)), 0);
        assert!(start.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn cross_thread_posts_wake_a_blocked_run() {
        let ctx = IoContext::new().unwrap();
        let guard = ctx.executor().work_guard();
        let ex = ctx.executor();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            for _ in 0..1000 {
                ex.post(|| {}).unwrap();
            }
            drop(guard);
        });
        assert_eq!(ctx.run(), 1000);
        thread.join().unwrap();
    }

    #[test]
    fn the_cross_thread_queue_is_bounded() {
        let ctx = IoContext::with_post_capacity(2).unwrap();
        let ex = ctx.executor();
        ex.post(|| {}).unwrap();
        ex.post(|| {}).unwrap();
        assert_eq!(ex.post(|| {}), Err(Error::PostQueueFull));
        assert_eq!(ctx.run(), 2);
        ex.post(|| {}).unwrap();
        drop(ctx);
        assert_eq!(ex.post(|| {}), Err(Error::ContextGone));
    }

    #[test]
    fn executor_stop_ends_run_from_another_thread() {
        let ctx = IoContext::new().unwrap();
        let _guard = ctx.executor().work_guard();
        let ex = ctx.executor();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            ex.stop();
        });
        ctx.run();
        t.join().unwrap();
        assert!(ctx.stopped());
    }

    /// Counts drops, to prove that shutdown frees what handlers captured.
    struct DropCounter(Rc<Cell<usize>>);
    impl Drop for DropCounter {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn dropping_the_context_drops_parked_handlers_uninvoked_without_leaks() {
        let drops = Rc::new(Cell::new(0));
        let invoked = Rc::new(Cell::new(false));
        {
            let ctx = IoContext::new().unwrap();
            // A "session" whose parked handler captures the session itself: a cycle that
            // only the context can break.
            struct Session {
                timer: SteadyTimer,
                _sock: TcpStream,
                _counter: DropCounter,
            }
            let session = Rc::new(Session {
                timer: SteadyTimer::new(&ctx),
                _sock: TcpStream::new(&ctx),
                _counter: DropCounter(drops.clone()),
            });
            session.timer.expires_after(Duration::from_secs(3600));
            let (me, flag) = (session.clone(), invoked.clone());
            session.timer.async_wait(move |_| {
                flag.set(true);
                drop(me);
            });
            let (me, flag) = (session.clone(), invoked.clone());
            ctx.post(move || {
                flag.set(true);
                drop(me);
            });
            let (me, flag) = (session.clone(), invoked.clone());
            let cycle = Rc::new(RefCell::new(None::<Box<dyn FnOnce()>>));
            *cycle.borrow_mut() = Some(Box::new(move || {
                flag.set(true);
                drop(me);
            }));
            drop(cycle);
            let weak = Rc::downgrade(&session);
            drop(session);
            assert!(
                weak.upgrade().is_some(),
                "the cycle keeps the session alive"
            );
            drop(ctx);
            assert!(weak.upgrade().is_none(), "the context broke the cycle");
        }
        assert_eq!(drops.get(), 1);
        assert!(!invoked.get(), "parked handlers are dropped, not invoked");
    }

    #[test]
    fn operations_after_shutdown_drop_their_handlers() {
        let ctx = IoContext::new().unwrap();
        let h = ctx.handle().clone();
        drop(ctx);
        let drops = Rc::new(Cell::new(0));
        let c = DropCounter(drops.clone());
        h.post(move || drop(c));
        assert_eq!(drops.get(), 1);
    }

    #[test]
    fn stale_tokens_never_reach_a_reused_slot() {
        struct Probe(Cell<usize>);
        impl IoObject for Probe {
            fn on_ready(&self, _: Readiness) {
                self.0.set(self.0.get() + 1);
            }
            fn on_shutdown(&self) {}
        }
        let ctx = IoContext::new().unwrap();
        let first = Rc::new(Probe(Cell::new(0)));
        let first_dyn: Rc<dyn IoObject> = first.clone();
        let old = ctx.register(Rc::downgrade(&first_dyn));
        ctx.deregister(old);
        let second = Rc::new(Probe(Cell::new(0)));
        let second_dyn: Rc<dyn IoObject> = second.clone();
        let new = ctx.register(Rc::downgrade(&second_dyn));
        assert_eq!(old.index, new.index, "the slot is reused");
        ctx.signal(old, Readiness::READABLE);
        ctx.signal(new, Readiness::READABLE);
        ctx.poll();
        assert_eq!(first.0.get(), 0);
        assert_eq!(second.0.get(), 1, "only the live token is delivered");
    }

    #[test]
    fn signals_in_a_row_for_one_object_are_delivered_once() {
        struct Probe(RefCell<Vec<Readiness>>);
        impl IoObject for Probe {
            fn on_ready(&self, readiness: Readiness) {
                self.0.borrow_mut().push(readiness);
            }
            fn on_shutdown(&self) {}
        }
        let ctx = IoContext::new().unwrap();
        let a = Rc::new(Probe(RefCell::new(Vec::new())));
        let b = Rc::new(Probe(RefCell::new(Vec::new())));
        let a_dyn: Rc<dyn IoObject> = a.clone();
        let b_dyn: Rc<dyn IoObject> = b.clone();
        let ta = ctx.register(Rc::downgrade(&a_dyn));
        let tb = ctx.register(Rc::downgrade(&b_dyn));
        for _ in 0..1000 {
            ctx.signal(ta, Readiness::READABLE);
        }
        ctx.signal(ta, Readiness::WRITABLE);
        ctx.signal(tb, Readiness::READABLE);
        ctx.signal(ta, Readiness::READABLE);
        assert_eq!(
            ctx.inner.signals.borrow().len(),
            3,
            "only adjacent signals join"
        );
        ctx.poll();
        let seen_a = a.0.borrow();
        assert_eq!(seen_a.len(), 2);
        assert!(seen_a[0].is_readable() && seen_a[0].is_writable());
        assert!(seen_a[1].is_readable() && !seen_a[1].is_writable());
        assert_eq!(b.0.borrow().len(), 1);
    }

    #[test]
    fn flushes_run_after_the_batch_and_before_polling() {
        struct Recorder(Rc<RefCell<Vec<u32>>>);
        impl Flush for Recorder {
            fn flush(&self) {
                self.0.borrow_mut().push(99);
            }
        }
        let ctx = IoContext::new().unwrap();
        let seen = log();
        let (h, s) = (ctx.handle().clone(), seen.clone());
        ctx.post(move || {
            s.borrow_mut().push(1);
            h.defer_flush(Rc::new(Recorder(s.clone())));
        });
        let s = seen.clone();
        ctx.post(move || s.borrow_mut().push(2));
        ctx.run();
        assert_eq!(*seen.borrow(), vec![1, 2, 99]);
    }

    #[test]
    fn rearming_a_timer_later_adds_no_heap_entries() {
        let ctx = IoContext::new().unwrap();
        let t = SteadyTimer::new(&ctx);
        t.expires_after(Duration::from_secs(10));
        t.async_wait(|r| assert_eq!(r, Err(Error::OperationAborted)));
        let internal_key = ctx.inner.timers.borrow_mut().create(None, None);
        for i in 0..1000 {
            // internal re-arm, later each time: no new entries
            ctx.inner.timers.borrow_mut().arm(
                internal_key,
                Some(Instant::now() + Duration::from_secs(20 + i)),
            );
        }
        assert_eq!(ctx.inner.timers.borrow().heap_len(), 1);
        t.cancel();
        ctx.run();
    }
}
