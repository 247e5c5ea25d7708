//! `ContextPool`: one context per thread, shared-nothing.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::context::IoContext;
use super::executor::Executor;

/// N [`IoContext`]s on N threads, sharing nothing (rbeast's answer to asio's "one
/// io_context, many threads, strands").
///
/// Each thread creates its context, calls `init(&ctx, index)` to start its work (for
/// example a listener bound with `reuse_port`), then runs the context until it runs out of
/// work or the pool is stopped.
///
/// ```
/// use rbeast::net::ContextPool;
/// let pool = ContextPool::new(2, |ctx, index| {
///     ctx.post(move || println!("context {index} running"));
/// })
/// .unwrap();
/// pool.join().unwrap();
/// ```
pub struct ContextPool {
    threads: Vec<JoinHandle<()>>,
    executors: Vec<Executor>,
}

impl ContextPool {
    /// Starts `threads` threads, each with its own context initialised by `init`.
    ///
    /// # Errors
    /// Creating a context or a thread failed; threads already started are stopped.
    ///
    /// ```
    /// let pool = rbeast::net::ContextPool::new(1, |_ctx, _i| {}).unwrap();
    /// pool.join().unwrap();
    /// ```
    pub fn new<F>(threads: usize, init: F) -> io::Result<ContextPool>
    where
        F: Fn(&IoContext, usize) + Send + Sync + 'static,
    {
        let init = Arc::new(init);
        let mut pool = ContextPool {
            threads: Vec::with_capacity(threads),
            executors: Vec::with_capacity(threads),
        };
        for index in 0..threads {
            let (tx, rx) = std::sync::mpsc::channel();
            let init = init.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("rbeast-ctx-{index}"))
                .spawn(move || {
                    let ctx = match IoContext::new() {
                        Ok(ctx) => ctx,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(ctx.executor()));
                    init(&ctx, index);
                    ctx.run();
                });
            let started = spawned.and_then(|thread| {
                pool.threads.push(thread);
                rx.recv()
                    .map_err(|_| io::Error::other("context thread exited during start"))?
            });
            match started {
                Ok(executor) => pool.executors.push(executor),
                Err(e) => {
                    pool.stop();
                    let _ = pool.join();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// The executors of the contexts, one per thread, in index order.
    ///
    /// ```
    /// let pool = rbeast::net::ContextPool::new(2, |_, _| {}).unwrap();
    /// assert_eq!(pool.executors().len(), 2);
    /// pool.join().unwrap();
    /// ```
    pub fn executors(&self) -> &[Executor] {
        &self.executors
    }

    /// Stops every context; their threads return from `run` promptly.
    ///
    /// ```
    /// let pool = rbeast::net::ContextPool::new(2, |ctx, _| {
    ///     std::mem::forget(ctx.executor().work_guard()); // would run forever
    /// })
    /// .unwrap();
    /// pool.stop();
    /// pool.join().unwrap();
    /// ```
    pub fn stop(&self) {
        for executor in &self.executors {
            executor.stop();
        }
    }

    /// Waits for every thread to finish.
    ///
    /// # Errors
    /// A context thread panicked; the panic payload of the first one is returned.
    ///
    /// ```
    /// rbeast::net::ContextPool::new(1, |_, _| {}).unwrap().join().unwrap();
    /// ```
    pub fn join(self) -> std::thread::Result<()> {
        let mut first = Ok(());
        for thread in self.threads {
            let r = thread.join();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}
