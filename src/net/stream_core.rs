//! The state shared by every byte-stream object (TCP and the in-memory test stream): latched
//! readiness, the listener, and the object's own asynchronous read and write operations.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::rc::{Rc, Weak};

use bytes::Buf;

use super::context::{Handle, IoHandler, IoObject, IoToken};
use super::flat_buffer::FlatBuffer;
use super::inline_op::WriteJob;
use super::readiness::Readiness;
use super::transport::ReadyListener;
use crate::Error;

/// The most bytes one `async_read_some` asks the OS for.
const READ_SOME_MAX: usize = 64 * 1024;
/// The most buffers gathered into one vectored write.
const MAX_IOVECS: usize = 64;

/// The raw non-blocking I/O of one kind of stream.
pub(crate) trait RawIo: Sized + 'static {
    /// True when a read shorter than the buffer proves the source is drained, so readiness
    /// can be cleared without waiting for `WouldBlock` (TCP with edge-triggered epoll).
    const SHORT_READ_DRAINS: bool;
    fn raw_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn raw_writev(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn raw_shutdown(&self, how: Shutdown) -> io::Result<()>;
    fn raw_close(&self);
    fn raw_is_open(&self) -> bool;
    /// Readiness arrived; kinds with extra operations (TCP connect) advance them here.
    fn on_ready_extra(_core: &StreamCore<Self>, _readiness: Readiness) {}
    /// Asks for (or stops asking for) writability events. Kinds whose writability is
    /// signalled only on demand (TCP, to spare a wake-up after every write) override it.
    fn want_writable(_core: &StreamCore<Self>, _on: bool) {}
    /// True while writability events are asked for (see
    /// [`want_writable`](RawIo::want_writable)).
    fn wants_writable(_core: &StreamCore<Self>) -> bool {
        false
    }
    /// Cancel extra operations.
    fn cancel_extra(_core: &StreamCore<Self>) {}
    /// Drop extra parked handlers at shutdown.
    fn shutdown_extra(_core: &StreamCore<Self>) {}
}

struct ReadOp {
    buffer: FlatBuffer,
    handler: IoHandler,
    /// Bytes wanted in all; 0 means "some".
    want: usize,
    got: usize,
}

struct WriteOp {
    job: WriteJob,
    all: bool,
    written: usize,
}

/// The pending operations of a byte-stream object.
#[derive(Default)]
struct Ops {
    read: Option<ReadOp>,
    write: Option<WriteOp>,
}

/// What an initiation may do.
enum Admission {
    Start,
    /// The context is shut down: the handler is dropped uninvoked.
    Drop,
    /// The handler is posted with this error.
    Refuse(Error),
}

pub(crate) struct StreamCore<R: RawIo> {
    pub(crate) handle: Handle,
    pub(crate) token: Cell<Option<IoToken>>,
    pub(crate) io: R,
    readable: Cell<bool>,
    writable: Cell<bool>,
    /// The peer's end of stream (or an error) was signalled: reads no longer block, so a
    /// short read proves nothing and readiness must stay set.
    read_closed: Cell<bool>,
    /// The object's own read and write, in a box allocated when it first starts one (an
    /// object under a WebSocket stream never does) and kept for the next ones.
    ops: RefCell<Option<Box<Ops>>>,
    listener: RefCell<Option<Weak<dyn ReadyListener>>>,
}

impl<R: RawIo> StreamCore<R> {
    /// Creates the core and registers it with the context.
    pub(crate) fn new(handle: &Handle, io: R, writable: bool) -> Rc<StreamCore<R>> {
        let core = Rc::new(StreamCore {
            handle: handle.clone(),
            token: Cell::new(None),
            io,
            readable: Cell::new(false),
            writable: Cell::new(writable),
            read_closed: Cell::new(false),
            ops: RefCell::new(None),
            listener: RefCell::new(None),
        });
        let weak: Weak<StreamCore<R>> = Rc::downgrade(&core);
        let token = handle.register(weak);
        core.token.set(Some(token));
        core
    }

    // ---- the Transport side ----

    pub(crate) fn t_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.track_read(len, || self.io.raw_read(buf))
    }

    /// Runs `read` (a read of at most `len` bytes), retrying on `EINTR`, and updates the
    /// readiness latch from its outcome.
    pub(crate) fn track_read(
        &self,
        len: usize,
        mut read: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match read() {
                Ok(n) => {
                    if R::SHORT_READ_DRAINS && n < len && n > 0 && !self.read_closed.get() {
                        // A short read drained the socket: the next edge re-arms us.
                        self.readable.set(false);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.readable.set(false);
                    }
                    return Err(e);
                }
            }
        }
    }

    pub(crate) fn t_write(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match self.io.raw_writev(bufs) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::WouldBlock {
                        self.writable.set(false);
                        R::want_writable(self, true);
                    }
                    return Err(e);
                }
                Ok(n) => {
                    if R::wants_writable(self) && n == bufs.iter().map(|b| b.len()).sum::<usize>() {
                        // Everything went: no need to hear about writability until a write
                        // would block again.
                        R::want_writable(self, false);
                    }
                    return Ok(n);
                }
            }
        }
    }

    pub(crate) fn readiness(&self) -> Readiness {
        let mut r = Readiness::EMPTY;
        if self.readable.get() {
            r = r | Readiness::READABLE;
        }
        if self.writable.get() {
            r = r | Readiness::WRITABLE;
        }
        r
    }

    pub(crate) fn set_listener(&self, listener: Weak<dyn ReadyListener>) {
        *self.listener.borrow_mut() = Some(listener);
    }

    pub(crate) fn set_latches(&self, readable: bool, writable: bool) {
        self.readable.set(readable);
        self.writable.set(writable);
        self.read_closed.set(false);
    }

    // ---- the object's own asynchronous operations ----

    /// Checks what every initiation checks.
    fn admit(&self, busy: bool) -> Admission {
        if self.handle.is_shut_down() {
            Admission::Drop // as every parked handler is at shutdown
        } else if !self.io.raw_is_open() {
            Admission::Refuse(Error::OperationAborted)
        } else if busy {
            Admission::Refuse(Error::AlreadyStarted)
        } else {
            Admission::Start
        }
    }

    pub(crate) fn start_read(&self, buffer: FlatBuffer, want: usize, handler: IoHandler) {
        let busy = self.read_busy();
        match self.admit(busy) {
            Admission::Start => {}
            Admission::Drop => return,
            Admission::Refuse(e) => return self.handle.post_io(handler, Err(e), 0),
        }
        self.handle.work_started();
        self.put_read(ReadOp {
            buffer,
            handler,
            want,
            got: 0,
        });
        self.advance_read();
    }

    pub(crate) fn start_write(&self, job: WriteJob, all: bool) {
        let busy = self.write_busy();
        match self.admit(busy) {
            Admission::Start => {}
            Admission::Drop => return,
            Admission::Refuse(e) => return self.handle.post_io(job.into_handler(), Err(e), 0),
        }
        self.handle.work_started();
        self.put_write(WriteOp {
            job,
            all,
            written: 0,
        });
        self.advance_write();
    }

    fn read_busy(&self) -> bool {
        self.ops
            .borrow()
            .as_ref()
            .is_some_and(|ops| ops.read.is_some())
    }

    fn write_busy(&self) -> bool {
        self.ops
            .borrow()
            .as_ref()
            .is_some_and(|ops| ops.write.is_some())
    }

    fn take_read(&self) -> Option<ReadOp> {
        self.ops
            .borrow_mut()
            .as_mut()
            .and_then(|ops| ops.read.take())
    }

    fn take_write(&self) -> Option<WriteOp> {
        self.ops
            .borrow_mut()
            .as_mut()
            .and_then(|ops| ops.write.take())
    }

    fn put_read(&self, op: ReadOp) {
        self.ops.borrow_mut().get_or_insert_with(Box::default).read = Some(op);
    }

    fn put_write(&self, op: WriteOp) {
        self.ops.borrow_mut().get_or_insert_with(Box::default).write = Some(op);
    }

    fn advance_read(&self) {
        let Some(mut op) = self.take_read() else {
            return;
        };
        let result = loop {
            let done = op.want != 0 && op.got == op.want;
            if done {
                break Ok(());
            }
            if !self.readable.get() {
                self.put_read(op);
                return;
            }
            let room = op.buffer.max_size() - op.buffer.size();
            let n = if op.want == 0 {
                READ_SOME_MAX.min(room)
            } else {
                (op.want - op.got).min(room)
            };
            if n == 0 {
                break Err(Error::BufferOverflow);
            }
            let read = match op.buffer.prepare(n) {
                Ok(mut area) => self.t_read(&mut area),
                Err(e) => break Err(e),
            };
            match read {
                Ok(0) => break Err(Error::Eof),
                Ok(k) => {
                    op.buffer.commit(k);
                    op.got += k;
                    if op.want == 0 {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break Err(Error::from(e)),
            }
        };
        self.handle.complete_io(op.handler, result, op.got);
    }

    fn advance_write(&self) {
        let Some(mut op) = self.take_write() else {
            return;
        };
        let result = loop {
            let data = op.job.data();
            if !data.has_remaining() {
                break Ok(());
            }
            if !self.writable.get() {
                self.put_write(op);
                return;
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let count = data.chunks_vectored(&mut slices);
            match self.t_write(&slices[..count]) {
                Ok(k) => {
                    op.job.data().advance(k);
                    op.written += k;
                    if !op.all {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => break Err(Error::from(e)),
            }
        };
        self.handle
            .complete_io(op.job.into_handler(), result, op.written);
    }

    /// Completes the pending read and write with `OperationAborted`.
    pub(crate) fn cancel(&self) {
        let read = self.take_read();
        if let Some(op) = read {
            self.handle
                .complete_io(op.handler, Err(Error::OperationAborted), op.got);
        }
        let write = self.take_write();
        if let Some(op) = write {
            self.handle.complete_io(
                op.job.into_handler(),
                Err(Error::OperationAborted),
                op.written,
            );
        }
        R::cancel_extra(self);
    }

    pub(crate) fn close(&self) {
        self.io.raw_close();
        self.cancel();
        // A listener (the WebSocket layer) learns of it by trying I/O, from the run loop.
        if self.listener.borrow().is_some() {
            if let Some(token) = self.token.get() {
                self.handle
                    .signal(token, Readiness::READABLE | Readiness::WRITABLE);
            }
        }
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.raw_shutdown(how)
    }
}

impl<R: RawIo> IoObject for StreamCore<R> {
    fn on_ready(&self, readiness: Readiness) {
        if readiness.is_readable() {
            self.readable.set(true);
        }
        if readiness.is_read_closed() {
            self.read_closed.set(true);
        }
        if readiness.is_writable() {
            self.writable.set(true);
        }
        // A connect in progress is the transport's own business, listener or not.
        R::on_ready_extra(self, readiness);
        let listener = self.listener.borrow().as_ref().and_then(Weak::upgrade);
        if let Some(listener) = listener {
            listener.on_ready(readiness);
            return;
        }
        if self.readable.get() {
            self.advance_read();
        }
        if self.writable.get() {
            self.advance_write();
        }
    }

    fn on_shutdown(&self) {
        let read = self.take_read();
        let write = self.take_write();
        R::shutdown_extra(self);
        let listener = self.listener.borrow().as_ref().and_then(Weak::upgrade);
        drop((read, write));
        if let Some(listener) = listener {
            listener.on_shutdown();
        }
    }
}

impl<R: RawIo> Drop for StreamCore<R> {
    /// The last handle is gone: the transport closes and pending operations complete with
    /// `OperationAborted`, as when an asio socket is destroyed.
    fn drop(&mut self) {
        if let Some(token) = self.token.get() {
            self.handle.deregister(token);
        }
        self.close();
    }
}

/// Implements [`Transport`](crate::net::Transport) for a handle type holding `core`.
macro_rules! transport_via_core {
    ($ty:ty) => {
        impl $crate::net::Transport for $ty {
            fn handle(&self) -> &$crate::net::Handle {
                &self.core.handle
            }
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.core.t_read(buf)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.core.t_write(bufs)
            }
            fn readiness(&self) -> $crate::net::Readiness {
                self.core.readiness()
            }
            fn set_listener(&mut self, listener: std::rc::Weak<dyn $crate::net::ReadyListener>) {
                self.core.set_listener(listener)
            }
            fn shutdown(&mut self, how: std::net::Shutdown) -> std::io::Result<()> {
                self.core.shutdown(how)
            }
            fn close(&mut self) {
                self.core.close()
            }
            fn is_open(&self) -> bool {
                self.core.io.raw_is_open()
            }
        }
    };
}
pub(crate) use transport_via_core;

/// Generates the asynchronous byte-stream operations of a handle type holding `core`.
/// `$setup` is the doc-example preamble that binds `s`, a connected stream, and `ctx`.
macro_rules! async_ops_via_core {
    ($ty:ty, $setup:literal) => {
        impl $ty {
            /// Reads some bytes, appending them to `buffer` (asio's `async_read_some`): one
            /// read of at most 64 KiB, bounded by the room left in `buffer`.
            ///
            /// # Handler
            /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of bytes
            /// appended to `buffer` (at least 1 on success).
            ///
            /// # Errors
            /// - [`Error::Eof`](crate::Error::Eof): the peer closed its side (end of stream).
            /// - [`Error::BufferOverflow`](crate::Error::BufferOverflow): `buffer` is full
            ///   (at its `max_size`).
            /// - [`Error::OperationAborted`](crate::Error::OperationAborted): the stream is
            ///   not open, or was closed or cancelled while the read waited.
            /// - [`Error::Io`](crate::Error::Io), and
            ///   [`Error::TestFailure`](crate::Error::TestFailure) from a
            ///   [`FailCount`](crate::test::FailCount) on a `test::Stream`.
            ///
            /// # Concurrency
            /// One read at a time (`async_read_some` or `async_read`): a second one while
            /// it is outstanding completes with
            /// [`Error::AlreadyStarted`](crate::Error::AlreadyStarted) and the first keeps
            /// going. A read and a write may be outstanding together.
            ///
            #[doc = "```"]
            #[doc = $setup]
            #[doc = "let buf = rbeast::net::FlatBuffer::new();"]
            #[doc = "s.async_read_some(&buf, |r, n| println!(\"{r:?} {n}\"));"]
            #[doc = "```"]
            pub fn async_read_some(
                &self,
                buffer: &$crate::net::FlatBuffer,
                handler: impl FnOnce(Result<(), $crate::Error>, usize) + 'static,
            ) {
                self.core
                    .start_read(buffer.clone(), 0, $crate::net::IoHandler::new(handler));
            }

            /// Reads exactly `n` bytes into `buffer` (asio's `async_read` with
            /// `transfer_exactly(n)`); an `n` of 0 is taken as 1.
            ///
            /// # Handler
            /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of bytes
            /// appended to `buffer`: `n` on success, the count read so far on error.
            ///
            /// # Errors
            /// As [`async_read_some`](Self::async_read_some); [`Error::Eof`](crate::Error::Eof)
            /// when the stream ends before `n` bytes, and
            /// [`Error::BufferOverflow`](crate::Error::BufferOverflow) when `buffer` fills up
            /// first.
            ///
            /// # Concurrency
            /// As [`async_read_some`](Self::async_read_some): one read at a time.
            ///
            #[doc = "```"]
            #[doc = $setup]
            #[doc = "let buf = rbeast::net::FlatBuffer::new();"]
            #[doc = "s.async_read(&buf, 4, |r, n| println!(\"{r:?} {n}\"));"]
            #[doc = "```"]
            pub fn async_read(
                &self,
                buffer: &$crate::net::FlatBuffer,
                n: usize,
                handler: impl FnOnce(Result<(), $crate::Error>, usize) + 'static,
            ) {
                self.core.start_read(
                    buffer.clone(),
                    n.max(1),
                    $crate::net::IoHandler::new(handler),
                );
            }

            /// Writes some of `data` with one vectored write (asio's `async_write_some`),
            /// once the stream is writable. `data` is any [`bytes::Buf`]; its chunks go out
            /// without copying.
            ///
            /// # Handler
            /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of bytes
            /// written, which may be fewer than `data` holds (0 for an empty `data`).
            ///
            /// # Errors
            /// - [`Error::OperationAborted`](crate::Error::OperationAborted): the stream is
            ///   not open, or was closed or cancelled while the write waited.
            /// - [`Error::Io`](crate::Error::Io) (for example `BrokenPipe` or
            ///   `ConnectionReset` when the peer is gone), and
            ///   [`Error::TestFailure`](crate::Error::TestFailure) from a
            ///   [`FailCount`](crate::test::FailCount) on a `test::Stream`.
            ///
            /// # Concurrency
            /// One write at a time (`async_write_some` or `async_write`): a second one while
            /// it is outstanding completes with
            /// [`Error::AlreadyStarted`](crate::Error::AlreadyStarted) and the first keeps
            /// going. A read and a write may be outstanding together.
            ///
            #[doc = "```"]
            #[doc = $setup]
            #[doc = "s.async_write_some(&b\"hi\"[..], |r, n| println!(\"{r:?} {n}\"));"]
            #[doc = "```"]
            pub fn async_write_some(
                &self,
                data: impl bytes::Buf + 'static,
                handler: impl FnOnce(Result<(), $crate::Error>, usize) + 'static,
            ) {
                self.core
                    .start_write($crate::net::WriteJob::new(data, handler), false);
            }

            /// Writes all of `data` (asio's `async_write`). Chains go out as vectored writes,
            /// without copying.
            ///
            /// # Handler
            /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of bytes
            /// written: all of `data` on success, the count written so far on error.
            ///
            /// # Errors
            /// As [`async_write_some`](Self::async_write_some).
            ///
            /// # Concurrency
            /// As [`async_write_some`](Self::async_write_some): one write at a time.
            ///
            #[doc = "```"]
            #[doc = $setup]
            #[doc = "use bytes::Buf;"]
            #[doc = "let msg = (&b\"head \"[..]).chain(&b\"body\"[..]);"]
            #[doc = "s.async_write(msg, |r, n| println!(\"{r:?} {n}\"));"]
            #[doc = "```"]
            pub fn async_write(
                &self,
                data: impl bytes::Buf + 'static,
                handler: impl FnOnce(Result<(), $crate::Error>, usize) + 'static,
            ) {
                self.core
                    .start_write($crate::net::WriteJob::new(data, handler), true);
            }

            /// Completes the pending read and write (and, on a `TcpStream`, a pending
            /// connect, which also closes the socket) with
            /// [`Error::OperationAborted`](crate::Error::OperationAborted); a connected stream
            /// stays open.
            ///
            #[doc = "```"]
            #[doc = $setup]
            #[doc = "s.cancel();"]
            #[doc = "```"]
            pub fn cancel(&self) {
                self.core.cancel();
            }
        }
    };
}
pub(crate) use async_ops_via_core;
