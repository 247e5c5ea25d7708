//! `TcpAcceptor`: a listening socket (asio's `tcp::acceptor`).

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use mio::Interest;

use super::context::{Handle, IoObject, IoToken};
use super::readiness::Readiness;
use super::tcp_stream::TcpStream;
use super::timer::InternalTimer;
use super::timer_queue::TimerTarget;
use crate::Error;

type AcceptHandler = Box<dyn FnOnce(Result<TcpStream, Error>)>;

/// How long accepting pauses after the process ran out of descriptors or memory.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(100);

/// Options for [`TcpAcceptor::bind_with`].
///
/// ```
/// let opts = rbeast::net::AcceptorOptions { reuse_port: true, ..Default::default() };
/// assert!(opts.reuse_address);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AcceptorOptions {
    /// The listen backlog (default 1024).
    pub backlog: i32,
    /// `SO_REUSEADDR` (default on, as asio's acceptor constructor does).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`, so that each context of a pool can own a listener on the same port
    /// (default off).
    pub reuse_port: bool,
}

impl Default for AcceptorOptions {
    fn default() -> Self {
        AcceptorOptions {
            backlog: 1024,
            reuse_address: true,
            reuse_port: false,
        }
    }
}

struct Inner {
    handle: Handle,
    token: Cell<Option<IoToken>>,
    listener: RefCell<Option<mio::net::TcpListener>>,
    op: RefCell<Option<AcceptHandler>>,
    backoff_until: Cell<Option<Instant>>,
    timer: RefCell<Option<InternalTimer>>,
}

/// A listening TCP socket (asio's `tcp::acceptor`). A cheap, clonable handle.
///
/// When the process runs out of file descriptors (EMFILE, ENFILE) or buffers, the error is
/// reported to the accept handler and accepting pauses for 100 ms before it is tried again,
/// so an accept loop never spins the CPU.
///
/// ```no_run
/// use rbeast::net::{IoContext, TcpAcceptor, TcpStream};
/// fn accept_loop(acceptor: TcpAcceptor) {
///     let a = acceptor.clone();
///     acceptor.async_accept(move |r| {
///         if let Ok(sock) = r {
///             // start a session with `sock`
///             # drop(sock);
///         }
///         accept_loop(a);
///     });
/// }
/// let ctx = IoContext::new().unwrap();
/// let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:8080".parse().unwrap()).unwrap();
/// accept_loop(acceptor);
/// ctx.run();
/// ```
#[derive(Clone)]
pub struct TcpAcceptor {
    inner: Rc<Inner>,
}

impl TcpAcceptor {
    /// Binds and listens on `addr` with the default options.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let a = rbeast::net::TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert_ne!(a.local_addr().unwrap().port(), 0);
    /// ```
    pub fn bind(handle: &Handle, addr: SocketAddr) -> io::Result<TcpAcceptor> {
        TcpAcceptor::bind_with(handle, addr, AcceptorOptions::default())
    }

    /// Binds and listens on `addr` with `options`.
    ///
    /// ```
    /// use rbeast::net::{AcceptorOptions, IoContext, TcpAcceptor};
    /// let ctx = IoContext::new().unwrap();
    /// let opts = AcceptorOptions { reuse_port: true, ..Default::default() };
    /// let a = TcpAcceptor::bind_with(&ctx, "127.0.0.1:0".parse().unwrap(), opts).unwrap();
    /// # drop(a);
    /// ```
    pub fn bind_with(
        handle: &Handle,
        addr: SocketAddr,
        options: AcceptorOptions,
    ) -> io::Result<TcpAcceptor> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_reuse_address(options.reuse_address)?;
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(options.backlog)?;
        let mut listener = mio::net::TcpListener::from_std(socket.into());
        let inner = Rc::new(Inner {
            handle: handle.clone(),
            token: Cell::new(None),
            listener: RefCell::new(None),
            op: RefCell::new(None),
            backoff_until: Cell::new(None),
            timer: RefCell::new(None),
        });
        let weak: Weak<Inner> = Rc::downgrade(&inner);
        let token = handle.register(weak.clone());
        inner.token.set(Some(token));
        handle
            .registry()
            .register(&mut listener, token.mio_token(), Interest::READABLE)?;
        *inner.listener.borrow_mut() = Some(listener);
        *inner.timer.borrow_mut() = Some(InternalTimer::new(handle, weak));
        Ok(TcpAcceptor { inner })
    }

    /// Accepts one connection (asio's `acceptor::async_accept` that hands out the new
    /// socket). The new stream belongs to this acceptor's context.
    ///
    /// # Handler
    /// `FnOnce(Result<TcpStream, Error>)`: the connected stream; no byte count.
    ///
    /// # Errors
    /// - [`Error::Io`]: accepting failed. When the process is out of file descriptors or
    ///   memory, accepting then pauses for 100 ms, so a loop that accepts again at once does
    ///   not spin.
    /// - [`Error::OperationAborted`]: the acceptor is closed, or [`cancel`](TcpAcceptor::cancel)
    ///   or [`close`](TcpAcceptor::close) was called, or its last handle was dropped, while
    ///   the accept waited.
    ///
    /// # Concurrency
    /// One accept at a time: a second one while it is outstanding completes with
    /// [`Error::AlreadyStarted`] and the first keeps waiting. Start the next accept from the
    /// handler, as Beast's listeners do.
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let a = rbeast::net::TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// a.async_accept(|r| println!("{:?}", r.map(|s| s.peer_addr())));
    /// ctx.run();
    /// ```
    pub fn async_accept(&self, handler: impl FnOnce(Result<TcpStream, Error>) + 'static) {
        let handle = &self.inner.handle;
        if handle.is_shut_down() {
            return;
        }
        let early = if self.inner.listener.borrow().is_none() {
            Some(Error::OperationAborted)
        } else if self.inner.op.borrow().is_some() {
            Some(Error::AlreadyStarted)
        } else {
            None
        };
        if let Some(e) = early {
            handle.post(move || handler(Err(e)));
            return;
        }
        handle.work_started();
        *self.inner.op.borrow_mut() = Some(Box::new(handler));
        self.inner.advance();
    }

    /// The bound address.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let a = rbeast::net::TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert!(a.local_addr().unwrap().ip().is_loopback());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.inner.listener.borrow().as_ref() {
            Some(l) => l.local_addr(),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// Completes a pending accept with [`Error::OperationAborted`].
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let a = rbeast::net::TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// a.async_accept(|r| assert_eq!(r.err(), Some(rbeast::Error::OperationAborted)));
    /// a.cancel();
    /// ctx.run();
    /// ```
    pub fn cancel(&self) {
        let op = self.inner.op.borrow_mut().take();
        if let Some(op) = op {
            self.inner
                .handle
                .complete_fn(Box::new(move || op(Err(Error::OperationAborted))));
        }
    }

    /// Stops listening; a pending accept completes with [`Error::OperationAborted`].
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let a = rbeast::net::TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// a.close();
    /// assert!(!a.is_open());
    /// ```
    pub fn close(&self) {
        let listener = self.inner.listener.borrow_mut().take();
        drop(listener);
        self.cancel();
    }

    /// True until [`close`](TcpAcceptor::close).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let a = rbeast::net::TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert!(a.is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        self.inner.listener.borrow().is_some()
    }
}

/// Errors that mean "out of resources": retrying at once would spin.
fn is_resource_exhaustion(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM (Linux numbering; the same on the BSDs for the first
    // two, which are the ones that matter in practice).
    matches!(e.raw_os_error(), Some(24) | Some(23) | Some(105) | Some(12))
}

impl Inner {
    fn advance(&self) {
        if self.op.borrow().is_none() {
            return;
        }
        if let Some(until) = self.backoff_until.get() {
            if Instant::now() < until {
                if let Some(timer) = self.timer.borrow().as_ref() {
                    timer.arm(Some(until));
                }
                return;
            }
            self.backoff_until.set(None);
        }
        loop {
            let accepted = match self.listener.borrow().as_ref() {
                Some(l) => l.accept(),
                None => return,
            };
            let result = match accepted {
                Ok((sock, _)) => TcpStream::from_accepted(&self.handle, sock).map_err(Error::from),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    if is_resource_exhaustion(&e) {
                        self.backoff_until
                            .set(Some(Instant::now() + RESOURCE_BACKOFF));
                    }
                    Err(Error::from(e))
                }
            };
            let op = self.op.borrow_mut().take();
            if let Some(op) = op {
                self.handle.complete_fn(Box::new(move || op(result)));
            }
            return;
        }
    }
}

impl IoObject for Inner {
    fn on_ready(&self, readiness: Readiness) {
        if readiness.is_readable() {
            self.advance();
        }
    }

    fn on_shutdown(&self) {
        let op = self.op.borrow_mut().take();
        drop(op);
    }
}

impl TimerTarget for Inner {
    fn on_timer(&self, _tag: u8) {
        self.advance();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(token) = self.token.get() {
            self.handle.deregister(token);
        }
        if let Some(op) = self.op.get_mut().take() {
            self.handle
                .complete_fn(Box::new(move || op(Err(Error::OperationAborted))));
        }
    }
}
