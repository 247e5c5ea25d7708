//! `SteadyTimer` (asio's `steady_timer`) and the internal timer used by other objects.

use std::rc::Weak;
use std::time::{Duration, Instant};

use super::context::Handle;
use super::timer_queue::{TimerKey, TimerTarget};
use crate::Error;

/// A timer on the monotonic clock (asio's `steady_timer`).
///
/// A timer costs one slot in its context, no allocation of its own; re-arming it to a later
/// deadline is O(1). A new timer's expiry is the moment it was created, so a wait without
/// `expires_after` completes at once, as in asio. Changing the expiry, [`cancel`], or
/// dropping the timer completes pending waits with [`Error::OperationAborted`].
///
/// [`cancel`]: SteadyTimer::cancel
///
/// ```
/// use std::time::Duration;
/// use rbeast::net::{IoContext, SteadyTimer};
/// let ctx = IoContext::new().unwrap();
/// let timer = SteadyTimer::new(&ctx);
/// timer.expires_after(Duration::from_millis(1));
/// timer.async_wait(|r| assert!(r.is_ok()));
/// assert_eq!(ctx.run(), 1);
/// ```
pub struct SteadyTimer {
    handle: Handle,
    key: TimerKey,
}

impl SteadyTimer {
    /// Creates a timer on the context of `handle`.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// # drop(t);
    /// ```
    pub fn new(handle: &Handle) -> SteadyTimer {
        let key = handle
            .inner
            .timers
            .borrow_mut()
            .create(Some(Instant::now()), None);
        SteadyTimer {
            handle: handle.clone(),
            key,
        }
    }

    /// Sets the expiry to `duration` from now; returns how many pending waits were cancelled.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// assert_eq!(t.expires_after(Duration::from_secs(1)), 0);
    /// ```
    pub fn expires_after(&self, duration: Duration) -> usize {
        self.expires_at(Instant::now() + duration)
    }

    /// Sets the expiry to `deadline`; returns how many pending waits were cancelled.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// t.expires_at(std::time::Instant::now());
    /// ```
    pub fn expires_at(&self, deadline: Instant) -> usize {
        self.set(Some(deadline))
    }

    /// Sets the expiry to "never": waits complete only when cancelled.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// t.expires_never();
    /// assert_eq!(t.expiry(), None);
    /// ```
    pub fn expires_never(&self) -> usize {
        self.set(None)
    }

    /// The current expiry, or `None` for "never".
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// assert!(t.expiry().is_some());
    /// ```
    pub fn expiry(&self) -> Option<Instant> {
        self.handle.inner.timers.borrow_mut().expiry(self.key)
    }

    /// Waits for the expiry (asio's `steady_timer::async_wait`). The handler gets `Ok(())`
    /// when the timer expired and [`Error::OperationAborted`] when it was cancelled,
    /// re-armed or dropped.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`; no byte count. A wait on a timer that has already
    /// expired completes with `Ok(())` on the next turn of the loop, never inside this call.
    ///
    /// # Errors
    /// [`Error::OperationAborted`] only: [`cancel`](SteadyTimer::cancel),
    /// [`expires_after`](SteadyTimer::expires_after), [`expires_at`](SteadyTimer::expires_at)
    /// or [`expires_never`](SteadyTimer::expires_never) was called, or the timer was
    /// dropped, before it expired.
    ///
    /// # Concurrency
    /// Any number of waits may be pending on one timer, as in asio; they complete in the
    /// order they were started.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// t.async_wait(|r| assert!(r.is_ok())); // a new timer has already expired
    /// ctx.run();
    /// ```
    pub fn async_wait(&self, handler: impl FnOnce(Result<(), Error>) + 'static) {
        if self.handle.is_shut_down() {
            return;
        }
        self.handle.work_started();
        let added = self
            .handle
            .inner
            .timers
            .borrow_mut()
            .add_waiter(self.key, Box::new(handler));
        if let Err(handler) = added {
            self.handle
                .complete_wait(handler, Err(Error::OperationAborted));
        }
    }

    /// Cancels pending waits; returns how many were cancelled.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let t = rbeast::net::SteadyTimer::new(&ctx);
    /// t.expires_after(Duration::from_secs(60));
    /// t.async_wait(|r| assert_eq!(r, Err(rbeast::Error::OperationAborted)));
    /// assert_eq!(t.cancel(), 1);
    /// ctx.run();
    /// ```
    pub fn cancel(&self) -> usize {
        let cancelled = self.handle.inner.timers.borrow_mut().cancel(self.key);
        self.abort(cancelled)
    }

    fn set(&self, expiry: Option<Instant>) -> usize {
        let cancelled = self
            .handle
            .inner
            .timers
            .borrow_mut()
            .set_expiry(self.key, expiry);
        self.abort(cancelled)
    }

    fn abort(&self, cancelled: Vec<super::context::WaitHandler>) -> usize {
        let n = cancelled.len();
        for h in cancelled {
            self.handle.complete_wait(h, Err(Error::OperationAborted));
        }
        n
    }
}

impl Drop for SteadyTimer {
    fn drop(&mut self) {
        let waiters = self.handle.inner.timers.borrow_mut().remove(self.key);
        self.abort(waiters);
    }
}

/// A timer that wakes an object of ours instead of a boxed handler.
pub(crate) struct InternalTimer {
    handle: Handle,
    key: TimerKey,
}

impl InternalTimer {
    pub(crate) fn new(handle: &Handle, target: Weak<dyn TimerTarget>) -> InternalTimer {
        InternalTimer::tagged(handle, target, 0)
    }

    /// A timer whose expiry reaches `target` with `tag`, for an object with more than one.
    pub(crate) fn tagged(handle: &Handle, target: Weak<dyn TimerTarget>, tag: u8) -> InternalTimer {
        let key = handle
            .inner
            .timers
            .borrow_mut()
            .create(None, Some((target, tag)));
        InternalTimer {
            handle: handle.clone(),
            key,
        }
    }

    /// The time to arm it from (see [`Handle::now`]).
    pub(crate) fn now(&self) -> Instant {
        self.handle.now()
    }

    /// Arms (or re-arms) the timer; `None` disarms it.
    pub(crate) fn arm(&self, expiry: Option<Instant>) {
        self.handle.inner.timers.borrow_mut().arm(self.key, expiry);
    }
}

impl Drop for InternalTimer {
    fn drop(&mut self) {
        let waiters = self.handle.inner.timers.borrow_mut().remove(self.key);
        debug_assert!(waiters.is_empty());
    }
}
