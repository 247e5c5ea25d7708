//! The `Transport` trait: Beast's "next layer", readiness-based.

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::rc::Weak;

use super::context::Handle;
use super::readiness::Readiness;

/// Receives the readiness events of a [`Transport`] whose operations it drives.
///
/// The WebSocket stream is the listener of its next layer: it advances its composed
/// operations directly on readiness events, with no allocation per step. A new transport
/// or layer (see `docs/architecture.md`) implements it the same way.
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use rbeast::net::{IoContext, Readiness, ReadyListener, Transport};
///
/// /// Counts the times the transport became readable.
/// struct Counter(Cell<usize>);
/// impl ReadyListener for Counter {
///     fn on_ready(&self, readiness: Readiness) {
///         if readiness.is_readable() {
///             self.0.set(self.0.get() + 1);
///         }
///     }
///     fn on_shutdown(&self) {}
/// }
///
/// let ctx = IoContext::new().unwrap();
/// let (mut a, b) = rbeast::test::Stream::pair(&ctx);
/// let counter = Rc::new(Counter(Cell::new(0)));
/// let listener: Rc<dyn ReadyListener> = counter.clone();
/// a.set_listener(Rc::downgrade(&listener));
/// b.async_write(&b"hi"[..], |r, _| assert!(r.is_ok()));
/// ctx.run(); // the event reaches the listener from the run loop
/// assert_eq!(counter.0.get(), 1);
/// let mut buf = [0u8; 8];
/// assert_eq!(a.read(&mut buf).unwrap(), 2);
/// ```
pub trait ReadyListener {
    /// The transport became readable and/or writable. Called from the context's run loop;
    /// the listener must queue completions, never run user handlers inline.
    fn on_ready(&self, readiness: Readiness);
    /// The context is shutting down: drop every parked handler uninvoked.
    fn on_shutdown(&self);
}

/// A non-blocking byte stream driven by an [`IoContext`](crate::net::IoContext): the port
/// of Beast's NextLayer concept.
///
/// Reads and writes never block: they return [`io::ErrorKind::WouldBlock`] when the
/// transport is not ready, and the transport tells its listener when that changes.
/// Readiness is edge-triggered and latched: [`readiness`](Transport::readiness) stays set
/// until an operation sees `WouldBlock` (or a short read).
///
/// Implemented by [`TcpStream`](crate::net::TcpStream),
/// [`test::Stream`](crate::test::Stream) and, with the `tls` feature, `tls::Stream`, which
/// wraps another transport.
///
/// ```
/// use rbeast::net::{IoContext, Transport};
/// use rbeast::test::Stream;
/// let ctx = IoContext::new().unwrap();
/// let (mut a, mut b) = Stream::pair(&ctx);
/// a.write_vectored(&[std::io::IoSlice::new(b"hi")]).unwrap();
/// let mut buf = [0u8; 8];
/// assert_eq!(b.read(&mut buf).unwrap(), 2);
/// ```
pub trait Transport: 'static {
    /// The context that drives this transport.
    fn handle(&self) -> &Handle;

    /// Reads available bytes without blocking. `Ok(0)` means end of stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes from several buffers without blocking; returns the bytes written.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// The latched readiness of the transport.
    fn readiness(&self) -> Readiness;

    /// Directs readiness events to `listener` (replacing any previous one). While a listener
    /// is set, the transport's own asynchronous operations must not be used.
    fn set_listener(&mut self, listener: Weak<dyn ReadyListener>);

    /// Shuts down one or both directions (TCP `shutdown`). The WebSocket teardown shuts
    /// down the sending side; a layered transport does its own part first (TLS sends its
    /// close_notify, then shuts down the next layer's sending side).
    fn shutdown(&mut self, how: Shutdown) -> io::Result<()>;

    /// Closes the transport; pending operations complete with `OperationAborted`.
    fn close(&mut self);

    /// True until [`close`](Transport::close) is called.
    fn is_open(&self) -> bool;
}
