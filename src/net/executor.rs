//! `Executor`: posting work to a context from any thread.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::Error;

pub(crate) enum Task {
    Post(Box<dyn FnOnce() + Send>),
    Complete(usize, Box<dyn Any + Send>),
}

/// State shared between a context and its executors.
pub(crate) struct Remote {
    tx: crossbeam_channel::Sender<Task>,
    waker: mio::Waker,
    /// `Task::Post`s sent and not yet taken by the context, bounded by `post_capacity`.
    /// The channel itself is unbounded (it allocates as tasks flow, not up front); this
    /// count makes the bound.
    posts: AtomicUsize,
    post_capacity: usize,
    /// Set when a wake is already on its way, so that a burst of posts costs one wake-up.
    pub(crate) notified: AtomicBool,
    /// Work guards held through executors.
    pub(crate) work: AtomicUsize,
    pub(crate) stop: AtomicBool,
}

impl Remote {
    pub(crate) fn new(
        tx: crossbeam_channel::Sender<Task>,
        waker: mio::Waker,
        post_capacity: usize,
    ) -> Remote {
        Remote {
            tx,
            waker,
            posts: AtomicUsize::new(0),
            post_capacity,
            notified: AtomicBool::new(false),
            work: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    fn wake(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            // A failed wake means the poll descriptor is gone: the context is being dropped.
            let _ = self.waker.wake();
        }
    }

    fn post(&self, f: Box<dyn FnOnce() + Send>) -> Result<(), Error> {
        if self.posts.fetch_add(1, Ordering::AcqRel) >= self.post_capacity {
            self.posts.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::PostQueueFull);
        }
        match self.tx.send(Task::Post(f)) {
            Ok(()) => {
                self.wake();
                Ok(())
            }
            Err(_) => {
                self.posts.fetch_sub(1, Ordering::AcqRel);
                Err(Error::ContextGone)
            }
        }
    }

    /// The context took a `Task::Post` out of the queue.
    pub(crate) fn took_post(&self) {
        self.posts.fetch_sub(1, Ordering::AcqRel);
    }

    /// Sends whatever the number of queued posts: used for completions the context already
    /// counts as outstanding work.
    pub(crate) fn send_unbounded(&self, task: Task) -> Result<(), Error> {
        self.tx.send(task).map_err(|_| Error::ContextGone)?;
        self.wake();
        Ok(())
    }
}

/// A `Send + Clone` handle that posts work to an [`IoContext`](crate::net::IoContext) from
/// any thread, and wakes its `run` promptly.
///
/// The cross-thread queue is bounded (see
/// [`IoContext::with_post_capacity`](crate::net::IoContext::with_post_capacity)).
///
/// ```
/// use rbeast::net::IoContext;
/// let ctx = IoContext::new().unwrap();
/// let ex = ctx.executor();
/// let t = std::thread::spawn(move || ex.post(|| println!("hello from a thread")));
/// t.join().unwrap().unwrap();
/// assert_eq!(ctx.run(), 1);
/// ```
#[derive(Clone)]
pub struct Executor {
    remote: Arc<Remote>,
}

impl Executor {
    pub(crate) fn new(remote: Arc<Remote>) -> Executor {
        Executor { remote }
    }

    /// Queues `f` to run on the context's thread.
    ///
    /// # Errors
    /// [`Error::PostQueueFull`] when the bounded queue is full, [`Error::ContextGone`] when
    /// the context was dropped. `f` is dropped in both cases.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// ctx.executor().post(|| {}).unwrap();
    /// assert_eq!(ctx.run(), 1);
    /// ```
    pub fn post(&self, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        self.remote.post(Box::new(f))
    }

    /// Asks the context's `run` to return, from any thread.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let _guard = ctx.executor().work_guard();
    /// let ex = ctx.executor();
    /// std::thread::spawn(move || ex.stop());
    /// ctx.run(); // returns although the guard keeps work outstanding
    /// ```
    pub fn stop(&self) {
        self.remote.stop.store(true, Ordering::SeqCst);
        self.remote.notified.store(true, Ordering::SeqCst);
        let _ = self.remote.waker.wake();
    }

    /// Keeps the context's `run` from returning for lack of work while the guard lives
    /// (asio's `make_work_guard`). The guard is `Send`: it may be dropped on any thread.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let guard = ctx.executor().work_guard();
    /// let ex = ctx.executor();
    /// std::thread::spawn(move || {
    ///     ex.post(|| println!("late work")).unwrap();
    ///     drop(guard);
    /// });
    /// ctx.run();
    /// ```
    pub fn work_guard(&self) -> WorkGuard {
        self.remote.work.fetch_add(1, Ordering::SeqCst);
        WorkGuard {
            remote: Some(self.remote.clone()),
        }
    }
}

/// Outstanding work held on behalf of the application; see [`Executor::work_guard`].
///
/// ```
/// let ctx = rbeast::net::IoContext::new().unwrap();
/// let mut guard = ctx.executor().work_guard();
/// guard.reset();
/// assert_eq!(ctx.run(), 0);
/// ```
pub struct WorkGuard {
    remote: Option<Arc<Remote>>,
}

impl WorkGuard {
    /// Releases the work early (asio's `work_guard::reset`).
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let mut g = ctx.executor().work_guard();
    /// g.reset();
    /// ```
    pub fn reset(&mut self) {
        if let Some(remote) = self.remote.take() {
            remote.work.fetch_sub(1, Ordering::SeqCst);
            remote.notified.store(true, Ordering::SeqCst);
            let _ = remote.waker.wake();
        }
    }
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.reset();
    }
}
