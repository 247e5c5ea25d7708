//! `tls::Stream`: a TLS stream over any next layer, itself a next layer (Beast's
//! `ssl_stream<NextLayer>`).

use std::cell::{Ref, RefCell, RefMut};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::config::Context;
use super::engine::{Engine, ReadOutcome};
use crate::error::io_error_from;
use crate::net::WaitHandler;
use crate::net::{Handle, InternalTimer, Readiness, ReadyListener, TimerTarget, Transport};
use crate::Error;

/// The default bound of [`async_handshake`](Stream::async_handshake) and
/// [`async_shutdown`](Stream::async_shutdown): Beast's suggested handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default bound of the encrypted bytes a stream holds for its next layer (see
/// [`Stream::set_output_limit`]).
pub const DEFAULT_OUTPUT_LIMIT: usize = 256 * 1024;

/// The stream's own operations (the handshake and the shutdown).
#[derive(Default)]
pub(crate) struct Ops {
    pub(crate) handshake: Option<WaitHandler>,
    pub(crate) shutdown: Option<WaitHandler>,
}

pub(crate) struct Shared<T: Transport> {
    pub(crate) handle: Handle,
    pub(crate) engine: RefCell<Engine<T>>,
    pub(crate) ops: RefCell<Ops>,
    pub(crate) context: Context,
    pub(crate) server_name: RefCell<Option<String>>,
    listener: RefCell<Option<Weak<dyn ReadyListener>>>,
    timeout: std::cell::Cell<Option<Duration>>,
    pub(crate) output_limit: std::cell::Cell<usize>,
    timer: RefCell<Option<InternalTimer>>,
    pub(crate) me: Weak<Shared<T>>,
}

impl<T: Transport> Shared<T> {
    /// Arms the timer bounding an operation of our own (or disarms it with `false`).
    pub(crate) fn arm_timer(&self, on: bool) {
        let deadline = match (on, self.timeout.get()) {
            (true, Some(d)) => Some(Instant::now() + d),
            _ => None,
        };
        let mut timer = self.timer.borrow_mut();
        if timer.is_none() && deadline.is_some() {
            let me: Weak<dyn TimerTarget> = self.me.clone();
            *timer = Some(InternalTimer::new(&self.handle, me));
        }
        if let Some(t) = timer.as_ref() {
            t.arm(deadline);
        }
    }

    /// Starts an operation of our own unless the context is shut down (the handler is
    /// dropped, as every parked handler is then) or `refusal` names an error (posted to the
    /// handler). `slot` is where the operation parks until it completes.
    pub(crate) fn start_op(
        &self,
        handler: WaitHandler,
        refusal: Option<Error>,
        slot: fn(&mut Ops) -> &mut Option<WaitHandler>,
    ) -> bool {
        if self.handle.is_shut_down() {
            return false;
        }
        if let Some(e) = refusal {
            self.handle.post_wait(handler, Err(e));
            return false;
        }
        self.handle.work_started();
        *slot(&mut self.ops.borrow_mut()) = Some(handler);
        self.arm_timer(true);
        true
    }

    /// Advances our own operations; true when none is pending afterwards.
    fn advance_ops(&self) -> bool {
        self.advance_handshake();
        self.advance_shutdown();
        let ops = self.ops.borrow();
        ops.handshake.is_none() && ops.shutdown.is_none()
    }

    /// Completes every operation of our own with `e`.
    pub(crate) fn abort_ops(&self, e: Error) {
        let ops = std::mem::take(&mut *self.ops.borrow_mut());
        if ops.handshake.is_some() || ops.shutdown.is_some() {
            self.arm_timer(false);
        }
        for h in [ops.handshake, ops.shutdown].into_iter().flatten() {
            self.handle.complete_wait(h, Err(e.clone()));
        }
    }

    /// Tells the listener (the WebSocket layer) what it may now do; no borrow is held.
    fn notify_listener(&self) {
        let listener = self.listener.borrow().as_ref().and_then(Weak::upgrade);
        if let Some(listener) = listener {
            listener.on_ready(self.readiness());
        }
    }

    fn readiness(&self) -> Readiness {
        let engine = self.engine.borrow();
        let mut r = Readiness::EMPTY;
        if engine.readable {
            r = r | Readiness::READABLE;
        }
        if engine.writable {
            r = r | Readiness::WRITABLE;
        }
        r
    }
}

impl<T: Transport> ReadyListener for Shared<T> {
    fn on_ready(&self, readiness: Readiness) {
        {
            let mut engine = self.engine.borrow_mut();
            if readiness.is_readable() {
                // TLS bytes may be waiting: only a read can tell.
                engine.readable = true;
            }
            if readiness.is_writable() {
                // Bytes rustls holds go out now; room for more plaintext follows.
                let _ = engine.write_out();
                engine.writable = true;
            }
        }
        if self.advance_ops() {
            self.notify_listener();
        }
    }

    fn on_shutdown(&self) {
        let ops = std::mem::take(&mut *self.ops.borrow_mut());
        drop(ops);
        let listener = self.listener.borrow().as_ref().and_then(Weak::upgrade);
        if let Some(listener) = listener {
            listener.on_shutdown();
        }
    }
}

impl<T: Transport> TimerTarget for Shared<T> {
    fn on_timer(&self, _tag: u8) {
        let pending = {
            let ops = self.ops.borrow();
            ops.handshake.is_some() || ops.shutdown.is_some()
        };
        if !pending {
            return;
        }
        {
            let mut engine = self.engine.borrow_mut();
            engine.error.get_or_insert(Error::Timeout);
            engine.readable = true;
            engine.writable = true;
            engine.next.close();
        }
        self.abort_ops(Error::Timeout);
    }
}

impl<T: Transport> Drop for Shared<T> {
    /// The last handle is gone: pending operations complete with `OperationAborted`.
    fn drop(&mut self) {
        let ops = std::mem::take(self.ops.get_mut());
        for h in [ops.handshake, ops.shutdown].into_iter().flatten() {
            self.handle.complete_wait(h, Err(Error::OperationAborted));
        }
    }
}

/// A TLS stream over a next layer `T`, driven by rustls from readiness events (Beast's
/// `ssl_stream<NextLayer>`). A cheap, clonable handle.
///
/// It is a [`Transport`] itself, so `websocket::Stream<tls::Stream<TcpStream>>` is a
/// `wss://` stream that works exactly like the plain one. Before the WebSocket handshake,
/// run the TLS handshake with [`async_handshake`](Stream::async_handshake) (through
/// `ws.next_layer()`, as in Beast). The WebSocket closing handshake ends with the TLS
/// shutdown (our close_notify, then the peer's) before the TCP teardown, as Beast's
/// `teardown` for SSL streams does.
///
/// No thread and no blocking: rustls's connection is a state machine fed from the next
/// layer's readiness events. Readiness is latched as for any transport: `read` returns
/// `WouldBlock` only when no decrypted plaintext is buffered and the next layer has no
/// more bytes.
///
/// ```no_run
/// use rbeast::net::{IoContext, TcpStream};
/// use rbeast::tls::{self, HandshakeType};
/// use rbeast::websocket;
///
/// let ctx = IoContext::new().unwrap();
/// let tls_ctx = tls::Context::client(tls::client_config_native_roots().unwrap());
/// let sock = TcpStream::new(&ctx);
/// let ws = websocket::Stream::new(tls::Stream::new(sock, &tls_ctx));
/// let w = ws.clone();
/// ws.next_layer().next_layer().async_connect("127.0.0.1:443".parse().unwrap(), move |r| {
///     r.unwrap();
///     w.next_layer().set_server_name("example.com").unwrap();
///     let w2 = w.clone();
///     w.next_layer().async_handshake(HandshakeType::Client, move |r| {
///         r.unwrap();
///         w2.async_handshake("example.com", "/", |r| println!("wss open: {r:?}"));
///     });
/// });
/// ctx.run();
/// ```
pub struct Stream<T: Transport> {
    pub(crate) shared: Rc<Shared<T>>,
}

impl<T: Transport> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Transport> Stream<T> {
    /// Wraps `next_layer` (connected or not) with the configurations of `context`. The TLS
    /// connection itself starts with [`async_handshake`](Stream::async_handshake).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let tls_ctx = rbeast::tls::Context::default();
    /// let s = rbeast::tls::Stream::new(a, &tls_ctx);
    /// assert!(s.is_open());
    /// ```
    pub fn new(mut next_layer: T, context: &Context) -> Stream<T> {
        let handle = next_layer.handle().clone();
        let shared = Rc::new_cyclic(|me: &Weak<Shared<T>>| {
            let listener: Weak<dyn ReadyListener> = me.clone();
            next_layer.set_listener(listener);
            Shared {
                handle,
                engine: RefCell::new(Engine::new(next_layer, DEFAULT_OUTPUT_LIMIT)),
                ops: RefCell::new(Ops::default()),
                context: context.clone(),
                server_name: RefCell::new(None),
                listener: RefCell::new(None),
                timeout: std::cell::Cell::new(Some(DEFAULT_HANDSHAKE_TIMEOUT)),
                output_limit: std::cell::Cell::new(DEFAULT_OUTPUT_LIMIT),
                timer: RefCell::new(None),
                me: me.clone(),
            }
        });
        Stream { shared }
    }

    /// The next layer (Beast's `next_layer()`). Do not hold the guard across operations.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// assert!(s.next_layer().is_open());
    /// ```
    pub fn next_layer(&self) -> Ref<'_, T> {
        Ref::map(self.shared.engine.borrow(), |e| &e.next)
    }

    /// The next layer, mutably.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// s.next_layer_mut().read_size(1);
    /// ```
    pub fn next_layer_mut(&self) -> RefMut<'_, T> {
        RefMut::map(self.shared.engine.borrow_mut(), |e| &mut e.next)
    }

    /// Sets the host name a client handshake sends (SNI) and verifies the server's
    /// certificate against (Beast: `SSL_set_tlsext_host_name`). An IP address is accepted
    /// too (verified, not sent as SNI).
    ///
    /// # Errors
    /// [`Error::Tls`] of kind [`Config`](crate::TlsErrorKind::Config) when `host` is neither
    /// a DNS name nor an IP address.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// s.set_server_name("example.com").unwrap();
    /// assert!(s.set_server_name("not a name!").is_err());
    /// ```
    pub fn set_server_name(&self, host: &str) -> Result<(), Error> {
        super::handshake::server_name(host)?;
        *self.shared.server_name.borrow_mut() = Some(host.to_owned());
        Ok(())
    }

    /// Bounds [`async_handshake`](Stream::async_handshake) and
    /// [`async_shutdown`](Stream::async_shutdown) (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`], 30 s; `None` for no bound). On expiry the next layer
    /// is closed and the operation completes with [`Error::Timeout`]. Use the WebSocket
    /// stream's handshake timeout here to bound the whole opening of a `wss://` stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// s.set_handshake_timeout(Some(std::time::Duration::from_secs(5)));
    /// assert_eq!(s.handshake_timeout(), Some(std::time::Duration::from_secs(5)));
    /// ```
    pub fn set_handshake_timeout(&self, timeout: Option<Duration>) {
        self.shared.timeout.set(timeout);
    }

    /// The bound of the handshake and the shutdown.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// assert_eq!(s.handshake_timeout(), Some(rbeast::tls::DEFAULT_HANDSHAKE_TIMEOUT));
    /// ```
    pub fn handshake_timeout(&self) -> Option<Duration> {
        self.shared.timeout.get()
    }

    /// Bounds the encrypted bytes the stream holds while its next layer cannot take them
    /// (default [`DEFAULT_OUTPUT_LIMIT`], 256 KiB; at least 16 KiB). Past it, writes take
    /// less or would block, and the WebSocket layer keeps the rest in its own bounded
    /// output. Large enough for a turn's worth of corked frames to leave in one write.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// s.set_output_limit(1 << 20);
    /// assert_eq!(s.output_limit(), 1 << 20);
    /// ```
    pub fn set_output_limit(&self, bytes: usize) {
        let bytes = bytes.max(16 * 1024);
        self.shared.output_limit.set(bytes);
        self.shared.engine.borrow_mut().output_limit = bytes;
    }

    /// The bound of held encrypted bytes.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// assert_eq!(s.output_limit(), rbeast::tls::DEFAULT_OUTPUT_LIMIT);
    /// ```
    pub fn output_limit(&self) -> usize {
        self.shared.output_limit.get()
    }

    /// True once the handshake has completed.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// assert!(!s.is_handshake_done());
    /// ```
    pub fn is_handshake_done(&self) -> bool {
        let engine = self.shared.engine.borrow();
        engine.conn.as_ref().is_some_and(|c| !c.is_handshaking())
    }

    /// The protocol version agreed on (after the handshake).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// assert!(s.protocol_version().is_none());
    /// ```
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        let engine = self.shared.engine.borrow();
        engine.conn.as_ref().and_then(|c| c.protocol_version())
    }

    /// Closes the stream and its next layer without a TLS shutdown; pending operations
    /// complete with [`Error::OperationAborted`]. TLS bytes already queued (a close_notify)
    /// get one last chance to leave.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = rbeast::tls::Stream::new(a, &rbeast::tls::Context::default());
    /// s.close();
    /// assert!(!s.is_open());
    /// ```
    pub fn close(&self) {
        {
            let mut engine = self.shared.engine.borrow_mut();
            let _ = engine.write_out();
            engine.closed = true;
            engine.readable = true;
            engine.writable = true;
            engine.next.close();
        }
        self.shared.abort_ops(Error::OperationAborted);
    }

    /// True until [`close`](Stream::close) (and while the next layer is open).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(rbeast::tls::Stream::new(a, &rbeast::tls::Context::default()).is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        let engine = self.shared.engine.borrow();
        !engine.closed && engine.next.is_open()
    }
}

impl<T: Transport> Transport for Stream<T> {
    fn handle(&self) -> &Handle {
        &self.shared.handle
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut engine = self.shared.engine.borrow_mut();
        engine.check().map_err(io_error_from)?;
        match engine.read_plaintext(buf) {
            Ok(n) => Ok(n),
            Err(ReadOutcome::WouldBlock) => {
                engine.readable = false;
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(ReadOutcome::Failed(e)) => Err(io_error_from(e)),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.shared.engine.borrow_mut().write_plaintext(bufs)
    }

    fn readiness(&self) -> Readiness {
        self.shared.readiness()
    }

    fn set_listener(&mut self, listener: Weak<dyn ReadyListener>) {
        *self.shared.listener.borrow_mut() = Some(listener);
    }

    /// `Shutdown::Write` (and `Both`) sends our close_notify and, once it has left, shuts
    /// down the next layer's write side: the TLS half of Beast's SSL teardown, followed by
    /// the TCP half. Reading on until [`read`](Transport::read) returns `Ok(0)` (the peer's
    /// close_notify) completes the exchange.
    fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        let mut engine = self.shared.engine.borrow_mut();
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            engine.next.shutdown(Shutdown::Read)?;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            engine.check().map_err(io_error_from)?;
            engine.send_close_notify(true);
            engine.write_out().map_err(io_error_from)?;
        }
        Ok(())
    }

    fn close(&mut self) {
        Stream::close(self);
    }

    fn is_open(&self) -> bool {
        Stream::is_open(self)
    }
}
