//! `TcpStream`: a non-blocking TCP socket driven by the context (asio's `tcp::socket`).

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;

use mio::Interest;

use super::context::{Handle, WaitHandler};
use super::readiness::Readiness;
use super::stream_core::{async_ops_via_core, transport_via_core, RawIo, StreamCore};
use crate::Error;

pub(crate) struct TcpIo {
    sock: RefCell<Option<mio::net::TcpStream>>,
    connect: RefCell<Option<WaitHandler>>,
    /// Registered for writability events too (while connecting, or after a write would
    /// block). Otherwise only readability is registered, so that a connection is not woken
    /// after every write when the peer's acknowledgements free send buffer space.
    write_interest: Cell<bool>,
}

impl TcpIo {
    fn register_interest(core: &StreamCore<Self>, writable: bool) -> io::Result<()> {
        let Some(token) = core.token.get() else {
            return Ok(());
        };
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match core.io.sock.borrow_mut().as_mut() {
            Some(sock) => {
                core.handle
                    .registry()
                    .reregister(sock, token.mio_token(), interest)?;
                core.io.write_interest.set(writable);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn not_connected() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

/// I/O on a socket that was closed locally: the operation was aborted.
fn closed() -> io::Error {
    crate::error::io_error_from(Error::OperationAborted)
}

impl TcpIo {
    /// Reads into memory that need not be initialised (`recv(2)` through socket2, which
    /// returns how many bytes at the start of `buf` it initialised).
    fn read_uninit(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        match self.sock.borrow().as_ref() {
            Some(s) => socket2::SockRef::from(s).recv(buf),
            None => Err(closed()),
        }
    }
}

impl RawIo for TcpIo {
    const SHORT_READ_DRAINS: bool = true;

    fn raw_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self.sock.borrow_mut().as_mut() {
            Some(s) => s.read(buf),
            None => Err(closed()),
        }
    }

    fn raw_writev(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.sock.borrow_mut().as_mut() {
            Some(s) => s.write_vectored(bufs),
            None => Err(closed()),
        }
    }

    fn raw_shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self.sock.borrow().as_ref() {
            Some(s) => s.shutdown(how),
            None => Err(not_connected()),
        }
    }

    fn raw_close(&self) {
        // Closing the descriptor also removes it from epoll.
        let sock = self.sock.borrow_mut().take();
        drop(sock);
    }

    fn raw_is_open(&self) -> bool {
        self.sock.borrow().is_some()
    }

    fn on_ready_extra(core: &StreamCore<Self>, readiness: Readiness) {
        if !readiness.is_writable() || core.io.connect.borrow().is_none() {
            return;
        }
        let outcome = match core.io.sock.borrow().as_ref() {
            None => Some(Err(Error::OperationAborted)),
            Some(s) => match s.take_error() {
                Ok(Some(e)) | Err(e) => Some(Err(Error::from(e))),
                Ok(None) => match s.peer_addr() {
                    Ok(_) => Some(Ok(())),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
                    Err(e) => Some(Err(Error::from(e))),
                },
            },
        };
        let Some(outcome) = outcome else { return };
        if outcome.is_err() {
            core.io.raw_close();
        } else {
            Self::want_writable(core, false);
        }
        let handler = core.io.connect.borrow_mut().take();
        if let Some(handler) = handler {
            core.handle.complete_wait(handler, outcome);
        }
    }

    fn want_writable(core: &StreamCore<Self>, on: bool) {
        if core.io.write_interest.get() != on {
            // A failed re-registration leaves the old interest; the next I/O reports any
            // real problem with the socket.
            let _ = TcpIo::register_interest(core, on);
        }
    }

    fn wants_writable(core: &StreamCore<Self>) -> bool {
        core.io.write_interest.get()
    }

    fn cancel_extra(core: &StreamCore<Self>) {
        let handler = core.io.connect.borrow_mut().take();
        if let Some(handler) = handler {
            core.io.raw_close();
            core.handle
                .complete_wait(handler, Err(Error::OperationAborted));
        }
    }

    fn shutdown_extra(core: &StreamCore<Self>) {
        let handler = core.io.connect.borrow_mut().take();
        drop(handler);
    }
}

/// A TCP connection driven by an [`IoContext`](crate::net::IoContext) (asio's
/// `tcp::socket`). A cheap, clonable handle.
///
/// Every asynchronous operation completes exactly once, from the context's run loop, never
/// inside the initiating call. At most one read and one write may be outstanding; a second
/// one completes with [`Error::AlreadyStarted`] and the first keeps going.
///
/// ```no_run
/// use rbeast::net::{FlatBuffer, IoContext, TcpStream};
/// let ctx = IoContext::new().unwrap();
/// let sock = TcpStream::new(&ctx);
/// let s = sock.clone();
/// sock.async_connect("127.0.0.1:8080".parse().unwrap(), move |r| {
///     r.unwrap();
///     s.async_write(&b"hello"[..], |r, n| println!("wrote {n} bytes: {r:?}"));
/// });
/// ctx.run();
/// ```
#[derive(Clone)]
pub struct TcpStream {
    pub(crate) core: Rc<StreamCore<TcpIo>>,
}

transport_via_core!(TcpStream);
async_ops_via_core!(
    TcpStream,
    "# let ctx = rbeast::net::IoContext::new().unwrap();\n# let s = rbeast::net::TcpStream::new(&ctx);"
);

impl TcpStream {
    /// A socket that is not connected yet; see [`async_connect`](TcpStream::async_connect).
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// assert!(s.peer_addr().is_err());
    /// ```
    pub fn new(handle: &Handle) -> TcpStream {
        TcpStream::with_socket(handle, None)
    }

    /// Reads available bytes into memory that need not be initialised, as
    /// [`Transport::read`](crate::net::Transport::read) does; returns how many bytes at the
    /// start of `buf` were read (and so initialised). Used to read large payloads straight
    /// into a caller's buffer without zero-filling it first.
    pub(crate) fn read_uninit(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let len = buf.len();
        self.core
            .track_read(len, || self.core.io.read_uninit(&mut *buf))
    }

    fn with_socket(handle: &Handle, sock: Option<mio::net::TcpStream>) -> TcpStream {
        let connected = sock.is_some();
        let io = TcpIo {
            sock: RefCell::new(None),
            connect: RefCell::new(None),
            write_interest: Cell::new(false),
        };
        let core = StreamCore::new(handle, io, connected);
        let stream = TcpStream { core };
        if let Some(sock) = sock {
            // Registration failing leaves the stream closed; its operations then abort.
            let _ = stream.install(sock, false);
        }
        stream
    }

    /// Wraps a socket accepted by a [`TcpAcceptor`](crate::net::TcpAcceptor).
    pub(crate) fn from_accepted(
        handle: &Handle,
        sock: mio::net::TcpStream,
    ) -> io::Result<TcpStream> {
        let stream = TcpStream::with_socket(handle, None);
        stream.install(sock, false)?;
        // A fresh connection can take data at once; readability arrives as an event.
        stream.core.set_latches(false, true);
        Ok(stream)
    }

    /// Registers `sock`; `writable` asks for writability events too (needed to learn that a
    /// connect completed).
    fn install(&self, mut sock: mio::net::TcpStream, writable: bool) -> io::Result<()> {
        let token = self.core.token.get().ok_or_else(not_connected)?;
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.core
            .handle
            .registry()
            .register(&mut sock, token.mio_token(), interest)?;
        self.core.io.write_interest.set(writable);
        *self.core.io.sock.borrow_mut() = Some(sock);
        Ok(())
    }

    /// Connects to `addr` (asio's `socket::async_connect`). An open socket is closed first
    /// (its pending operations abort).
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`: `Ok(())` once connected; no byte count.
    ///
    /// # Errors
    /// - [`Error::Io`]: the connection failed (for example `ConnectionRefused`), or the
    ///   socket could not be created; the socket is closed.
    /// - [`Error::OperationAborted`]: [`cancel`](TcpStream::cancel) or
    ///   [`close`](TcpStream::close) was called, or the last handle was dropped, while it
    ///   was connecting.
    ///
    /// There is no connect timeout of its own: bound it with a
    /// [`SteadyTimer`](crate::net::SteadyTimer) that closes the socket (see
    /// `examples/websocket_client_async.rs`).
    ///
    /// # Concurrency
    /// One connect at a time: a second one while it is outstanding completes with
    /// [`Error::AlreadyStarted`]. Reads and writes wait for the connection.
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// s.async_connect("127.0.0.1:9".parse().unwrap(), |r| println!("{r:?}"));
    /// ctx.run();
    /// ```
    pub fn async_connect(
        &self,
        addr: SocketAddr,
        handler: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let handle = &self.core.handle;
        if handle.is_shut_down() {
            return;
        }
        if self.core.io.connect.borrow().is_some() {
            handle.post_wait(Box::new(handler), Err(Error::AlreadyStarted));
            return;
        }
        self.core.close();
        self.core.set_latches(false, false);
        let started = mio::net::TcpStream::connect(addr).and_then(|s| self.install(s, true));
        if let Err(e) = started {
            self.core.io.raw_close();
            handle.post_wait(Box::new(handler), Err(Error::from(e)));
            return;
        }
        handle.work_started();
        *self.core.io.connect.borrow_mut() = Some(Box::new(handler));
    }

    /// Tries each address in turn until one connects (asio's free `async_connect` over a
    /// resolver's results); the handler gets the address that connected, or the last error.
    ///
    /// # Handler
    /// `FnOnce(Result<SocketAddr, Error>)`: the address that connected.
    ///
    /// # Errors
    /// - The error of the last address tried, when none connected (see
    ///   [`async_connect`](TcpStream::async_connect)); an `io::ErrorKind::NotFound`
    ///   [`Error::Io`] when `addrs` is empty.
    /// - [`Error::OperationAborted`]: cancelled or closed; the remaining addresses are not
    ///   tried.
    ///
    /// # Concurrency
    /// As [`async_connect`](TcpStream::async_connect): one connect at a time.
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// let addrs = vec!["127.0.0.1:8080".parse().unwrap()];
    /// s.async_connect_any(addrs, |r| println!("{r:?}"));
    /// ctx.run();
    /// ```
    pub fn async_connect_any(
        &self,
        addrs: Vec<SocketAddr>,
        handler: impl FnOnce(Result<SocketAddr, Error>) + 'static,
    ) {
        self.connect_next(
            addrs,
            0,
            Error::from(io::ErrorKind::NotFound),
            Box::new(handler),
        );
    }

    fn connect_next(
        &self,
        addrs: Vec<SocketAddr>,
        index: usize,
        last: Error,
        handler: Box<dyn FnOnce(Result<SocketAddr, Error>)>,
    ) {
        let Some(&addr) = addrs.get(index) else {
            self.core.handle.post(move || handler(Err(last)));
            return;
        };
        let this = self.clone();
        self.async_connect(addr, move |r| match r {
            Ok(()) => handler(Ok(addr)),
            Err(Error::OperationAborted) => handler(Err(Error::OperationAborted)),
            Err(e) => this.connect_next(addrs, index + 1, e, handler),
        });
    }

    /// Closes the socket; pending operations complete with [`Error::OperationAborted`].
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// s.close();
    /// assert!(!s.is_open());
    /// ```
    pub fn close(&self) {
        self.core.close();
    }

    /// True while the socket is open (connecting or connected).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert!(!rbeast::net::TcpStream::new(&ctx).is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        self.core.io.raw_is_open()
    }

    /// Shuts down one or both directions.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// assert!(s.shutdown(std::net::Shutdown::Write).is_err()); // not connected
    /// ```
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.core.shutdown(how)
    }

    fn with_sock<T>(&self, f: impl FnOnce(&mio::net::TcpStream) -> io::Result<T>) -> io::Result<T> {
        match self.core.io.sock.borrow().as_ref() {
            Some(s) => f(s),
            None => Err(not_connected()),
        }
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// assert!(s.set_nodelay(true).is_err()); // not connected
    /// ```
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.with_sock(|s| s.set_nodelay(on))
    }

    /// Sets the kernel send buffer size (`SO_SNDBUF`).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// assert!(s.set_send_buffer_size(4096).is_err()); // not connected
    /// ```
    pub fn set_send_buffer_size(&self, size: usize) -> io::Result<()> {
        self.with_sock(|s| socket2::SockRef::from(s).set_send_buffer_size(size))
    }

    /// Sets the kernel receive buffer size (`SO_RCVBUF`).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::net::TcpStream::new(&ctx);
    /// assert!(s.set_recv_buffer_size(4096).is_err()); // not connected
    /// ```
    pub fn set_recv_buffer_size(&self, size: usize) -> io::Result<()> {
        self.with_sock(|s| socket2::SockRef::from(s).set_recv_buffer_size(size))
    }

    /// The local address.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert!(rbeast::net::TcpStream::new(&ctx).local_addr().is_err());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with_sock(|s| s.local_addr())
    }

    /// The peer's address.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert!(rbeast::net::TcpStream::new(&ctx).peer_addr().is_err());
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with_sock(|s| s.peer_addr())
    }
}
