//! `Resolver`: host name lookup off the reactor thread (asio's `tcp::resolver`).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use super::context::Handle;
use crate::Error;

/// Resolves host names to socket addresses on a helper thread and posts the result back to
/// the context, so the reactor never blocks on DNS.
///
/// ```
/// use rbeast::net::{IoContext, Resolver};
/// let ctx = IoContext::new().unwrap();
/// let resolver = Resolver::new(&ctx);
/// resolver.async_resolve("localhost", 80, |r| {
///     let addrs = r.unwrap();
///     assert!(addrs.iter().all(|a| a.port() == 80));
/// });
/// ctx.run();
/// ```
pub struct Resolver {
    handle: Handle,
    /// Keys of the lookups still parked, for `cancel`.
    pending: Rc<RefCell<Vec<usize>>>,
}

impl Resolver {
    /// Creates a resolver on the context of `handle`.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let r = rbeast::net::Resolver::new(&ctx);
    /// # drop(r);
    /// ```
    pub fn new(handle: &Handle) -> Resolver {
        Resolver {
            handle: handle.clone(),
            pending: Rc::new(RefCell::new(Vec::new())),
        }
    }

    /// Looks up `host` (a name or an address literal) and `port` (asio's
    /// `resolver::async_resolve`). The lookup runs on a helper thread; the handler runs on
    /// the context's thread.
    ///
    /// # Handler
    /// `FnOnce(Result<Vec<SocketAddr>, Error>)`: the addresses, in the system's order, each
    /// with `port`.
    ///
    /// # Errors
    /// - [`Error::Io`]: the lookup failed; an empty result is reported as
    ///   `io::ErrorKind::NotFound`. A helper thread that cannot be started is reported the
    ///   same way, with the system's error.
    /// - [`Error::OperationAborted`]: [`cancel`](Resolver::cancel) was called first.
    ///
    /// # Concurrency
    /// Any number of lookups may be pending at once, each on its own thread.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let r = rbeast::net::Resolver::new(&ctx);
    /// r.async_resolve("127.0.0.1", 8080, |r| {
    ///     assert_eq!(r.unwrap()[0], "127.0.0.1:8080".parse().unwrap());
    /// });
    /// ctx.run();
    /// ```
    pub fn async_resolve(
        &self,
        host: &str,
        port: u16,
        handler: impl FnOnce(Result<Vec<SocketAddr>, Error>) + 'static,
    ) {
        if self.handle.is_shut_down() {
            return;
        }
        let own_key = Rc::new(Cell::new(usize::MAX));
        let (key, pending) = (own_key.clone(), self.pending.clone());
        let completion = self
            .handle
            .park_remote::<io::Result<Vec<SocketAddr>>>(Box::new(move |r| {
                pending.borrow_mut().retain(|&k| k != key.get());
                handler(r.map_err(Error::from))
            }));
        own_key.set(completion.key);
        self.pending.borrow_mut().push(completion.key);
        let host = host.to_owned();
        let spawned = std::thread::Builder::new()
            .name("rbeast-resolve".into())
            .spawn(move || {
                let result = (host.as_str(), port).to_socket_addrs().and_then(|a| {
                    let addrs: Vec<SocketAddr> = a.collect();
                    if addrs.is_empty() {
                        Err(io::Error::from(io::ErrorKind::NotFound))
                    } else {
                        Ok(addrs)
                    }
                });
                completion.complete(result);
            });
        if let Err(e) = spawned {
            // The completion was moved into the failed closure and dropped with it; report
            // the spawn failure through the parked handler instead.
            let key = self.pending.borrow_mut().pop();
            if let Some(slot) = key.and_then(|k| self.handle.take_remote(k)) {
                self.handle
                    .post(move || slot(Box::new(Err::<Vec<SocketAddr>, _>(e))));
            }
        }
    }

    /// Completes pending lookups with [`Error::OperationAborted`]; their late results are
    /// discarded.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let r = rbeast::net::Resolver::new(&ctx);
    /// r.async_resolve("localhost", 1, |r| assert_eq!(r.err(), Some(rbeast::Error::OperationAborted)));
    /// r.cancel();
    /// ctx.run();
    /// ```
    pub fn cancel(&self) {
        let keys = std::mem::take(&mut *self.pending.borrow_mut());
        for key in keys {
            if let Some(slot) = self.handle.take_remote(key) {
                let aborted: io::Result<Vec<SocketAddr>> =
                    Err(crate::error::io_error_from(Error::OperationAborted));
                self.handle.post(move || slot(Box::new(aborted)));
            }
        }
    }
}
