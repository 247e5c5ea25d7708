//! `websocket::Stream`: Beast's `websocket::stream<NextLayer>` on the reactor.

use std::cell::{Ref, RefCell, RefMut};
use std::rc::{Rc, Weak};

use bytes::Buf;

use super::core::{
    CloseOp, Consumer, ControlCallback, ControlObserver, Core, Framing, ReadOp, Status, WriteOp,
    ZERO_COPY_MIN,
};
use super::deflate::IDLE_RELEASE_TIMER;
use super::handshake::{header_of, ClientHandler};
use super::timeout::Timeout;
use super::FrameType;
use crate::net::{
    FlatBuffer, Handle, InternalTimer, IoHandler, Readiness, ReadyListener, Transport, WaitHandler,
    WriteJob,
};
use crate::proto::close::CloseReason;
use crate::proto::deflate::{PermessageDeflate, PermessageDeflateStatus};
use crate::proto::frame::{Opcode, MAX_CONTROL_PAYLOAD};
use crate::proto::handshake::{AcceptDecision, RequestType, ResponseType};
use crate::{ArgumentError, Error, Role};

pub(crate) struct Inner<T: Transport> {
    pub(crate) handle: Handle,
    pub(crate) core: RefCell<Core<T>>,
    me: Weak<Inner<T>>,
}

impl<T: Transport> Inner<T> {
    /// Runs the engine, then asks for an end-of-turn flush if output is waiting.
    pub(crate) fn drive(&self) {
        self.run(|core, handle| core.drive(handle));
    }

    /// As [`drive`](Inner::drive) after a read was started or input arrived: when only
    /// input can advance an operation, parsing it is all the engine would do.
    fn drive_read(&self) {
        self.run(|core, handle| !core.read_at_once(handle) && core.drive(handle));
    }

    /// As [`drive`](Inner::drive) after a write was started: when its frames fit in the
    /// output at once, nothing else can have changed and the whole engine need not run.
    fn drive_write(&self) {
        self.run(|core, handle| !core.write_at_once(handle) && core.drive(handle));
    }

    /// Asks for the end-of-turn flush of the output (the core's request was taken).
    fn request_flush(&self) {
        if let Some(me) = self.me.upgrade() {
            self.handle.defer_flush(me);
        }
    }

    /// Runs `step` on the core (true: it stopped at its fairness bound with work left),
    /// then asks for an end-of-turn flush if output is waiting.
    fn run(&self, step: impl FnOnce(&mut Core<T>, &Handle) -> bool) {
        let (again, flush) = {
            let mut core = self.core.borrow_mut();
            let again = step(&mut core, &self.handle);
            (again, core.take_flush_request())
        };
        if flush {
            self.request_flush();
        }
        if again {
            // Fairness bound reached with work left: continue on a later turn.
            let me = self.me.clone();
            self.handle.post(move || {
                if let Some(me) = me.upgrade() {
                    me.drive();
                }
            });
        }
    }
}

impl<T: Transport> Drop for Inner<T> {
    /// The last handle is gone: pending operations complete with `OperationAborted`
    /// (Beast: a destroyed stream's operations end with `operation_aborted`).
    fn drop(&mut self) {
        let (read, write, close, handshake, _control) = self.core.get_mut().take_all_handlers();
        let aborted = || Err(Error::OperationAborted);
        if let Some(op) = read {
            self.handle.complete_io(op.handler, aborted(), op.n);
        }
        if let Some(op) = write {
            op.complete(&self.handle, aborted());
        }
        if let Some(h) = close {
            self.handle.complete_wait(h, aborted());
        }
        if let Some(op) = handshake {
            op.complete(&self.handle, aborted(), None);
        }
    }
}

impl<T: Transport> ReadyListener for Inner<T> {
    fn on_ready(&self, _readiness: Readiness) {
        self.drive_read();
    }

    fn on_shutdown(&self) {
        let taken = self.core.borrow_mut().take_all_handlers();
        drop(taken);
    }
}

impl<T: Transport> crate::net::TimerTarget for Inner<T> {
    fn on_timer(&self, tag: u8) {
        if tag == IDLE_RELEASE_TIMER {
            self.core.borrow_mut().pmd_release_timer_expired();
            return;
        }
        self.core.borrow_mut().on_timer(&self.handle);
        self.drive();
    }
}

impl<T: Transport> crate::net::Flush for Inner<T> {
    fn flush(&self) {
        let hold = self.core.borrow_mut().hold_output();
        if hold {
            if let Some(me) = self.me.upgrade() {
                self.handle.defer_flush_next_turn(me);
                return;
            }
        }
        let advance = {
            let mut core = self.core.borrow_mut();
            core.flush_now(&self.handle) && core.waits_for_output()
        };
        if advance {
            // Room in the output may let a parked write go on, and a failed flush changed
            // the stream's status: advance.
            self.drive();
        }
    }
}

/// A WebSocket stream over a next layer `T` (Beast's `websocket::stream<NextLayer>`).
///
/// A cheap, clonable handle: clones share one connection, and the connection lives until
/// its last handle is dropped (pending operations then complete with
/// [`Error::OperationAborted`]). Like every object of a context it is `!Send`: it is used
/// on the context's thread only.
///
/// # Handlers
///
/// Every operation takes a handler, a `FnOnce(..) + 'static` closure that need not be
/// `Send`. Reads and writes complete with `(Result<(), Error>, usize)`, where the `usize`
/// is `bytes_transferred` with Beast's meaning (payload bytes appended to the buffer, after
/// inflation, for reads; bytes taken from the caller's data, never header or compressed
/// bytes, for writes); the handshake, accept, ping, pong and close complete with
/// `Result<(), Error>`. A handler runs exactly once, from the context's run loop, never
/// inside the call that started the operation, even when the operation fails at once. If
/// the context is dropped first, parked handlers are dropped uninvoked, and an operation
/// started after that drops its handler at once.
///
/// # Errors every operation can complete with
///
/// Besides the errors listed on each operation:
///
/// - [`Error::OperationAborted`]: the stream is not open (before the handshake, after a
///   close frame was sent or received, after a failure), the transport was closed under it,
///   or another operation already received the connection's error. This is Beast's
///   *first error* rule: the first real error of a connection goes to one operation, and
///   every operation after it sees `OperationAborted`. An error met while no operation was
///   pending (a failed flush of corked output, an expired timer) is kept for the next
///   operation started.
/// - [`Error::Timeout`]: a bound set with [`set_timeout`](Stream::set_timeout) expired; the
///   transport was closed without a close frame.
/// - Transport errors: [`Error::Eof`] (the peer closed the connection without the closing
///   handshake), [`Error::Io`], and [`Error::TestFailure`] on a
///   [`test::Stream`](crate::test::Stream) with a [`FailCount`](crate::test::FailCount).
///
/// # What may be outstanding at once
///
/// As in Beast: one read ([`async_read`](Stream::async_read) or
/// [`async_read_some`](Stream::async_read_some)), one write
/// ([`async_write`](Stream::async_write) or [`async_write_some`](Stream::async_write_some))
/// and one [`async_close`](Stream::async_close) may be outstanding together; the handshake
/// or accept runs alone, before any of them. A second operation of a kind that is
/// outstanding completes with [`Error::AlreadyStarted`] and the first one keeps going,
/// where Beast asserts or has undefined behaviour. Pings and pongs complete as soon as their
/// frame is queued, so any number may be started (Beast allows one at a time). Control
/// frames and close replies go out between whole frames of a message being written.
///
/// Writes are corked: a write completes once its frames are queued in the connection's
/// bounded output, and the context writes each connection's output with one vectored write
/// per loop turn. A plain read → write → read echo loop therefore batches its system calls
/// by itself. A write is outstanding only until its frames are queued, which usually happens
/// inside the call; it stays outstanding (and a second write gets `AlreadyStarted`) while
/// the output is past its high-water mark. Portable code starts the next write from the
/// handler of the last one, as with Beast, or uses a [`WriteQueue`](super::WriteQueue).
///
/// ```
/// use rbeast::net::{FlatBuffer, IoContext};
/// use rbeast::test;
/// use rbeast::websocket::Stream;
///
/// let ctx = IoContext::new().unwrap();
/// let (a, b) = test::Stream::pair(&ctx);
/// let (client, server) = (Stream::new(a), Stream::new(b));
/// # client.open_unchecked(rbeast::Role::Client);
/// # server.open_unchecked(rbeast::Role::Server);
/// client.async_write(&b"hello"[..], |r, n| assert_eq!((r, n), (Ok(()), 5)));
/// let buf = FlatBuffer::new();
/// let got = buf.clone();
/// server.async_read(&buf, move |r, n| {
///     r.unwrap();
///     assert_eq!(&*got.data(), b"hello");
///     assert_eq!(n, 5);
/// });
/// ctx.run();
/// ```
pub struct Stream<T: Transport> {
    inner: Rc<Inner<T>>,
}

impl<T: Transport> Clone for Stream<T> {
    fn clone(&self) -> Self {
        Stream {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Transport> Stream<T> {
    /// Wraps a next layer (Beast's constructor). The stream opens with a handshake.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert!(!ws.is_open());
    /// ```
    pub fn new(mut transport: T) -> Stream<T> {
        let handle = transport.handle().clone();
        let inner = Rc::new_cyclic(|me: &Weak<Inner<T>>| {
            let listener: Weak<dyn ReadyListener> = me.clone();
            transport.set_listener(listener);
            Inner {
                handle,
                core: RefCell::new(Core::new(transport)),
                me: me.clone(),
            }
        });
        Stream { inner }
    }

    /// Opens the stream in `role` without a handshake, for tests of the message layer and
    /// for transports that negotiated the upgrade elsewhere. Not part of Beast's API.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.open_unchecked(rbeast::Role::Server);
    /// assert!(ws.is_open());
    /// ```
    pub fn open_unchecked(&self, role: Role) {
        self.inner.core.borrow_mut().open(role);
    }

    fn core(&self) -> RefMut<'_, Core<T>> {
        self.inner.core.borrow_mut()
    }

    /// Whether the compressor and the decompressor hold zlib states (false without
    /// permessage-deflate).
    #[cfg(test)]
    pub(crate) fn zlib_states_held(&self) -> (bool, bool) {
        self.inner.core.borrow().pmd.zlib_states_held()
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Frames a whole message at once if the write side is free and the output has room
    /// (see [`WriteQueue`](super::WriteQueue)).
    pub(crate) fn try_emit_message(
        &self,
        binary: bool,
        data: &bytes::Bytes,
    ) -> Result<bool, Error> {
        let emitted = self.core().try_emit_message(binary, data);
        if emitted == Ok(true) {
            self.inner.drive();
        }
        emitted
    }

    // ---------------------------------------------------------------- observers

    /// The next layer (Beast's `next_layer()`). Do not hold the guard across operations.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert!(ws.next_layer().is_open());
    /// ```
    pub fn next_layer(&self) -> Ref<'_, T> {
        Ref::map(self.inner.core.borrow(), |c| &c.transport)
    }

    /// The next layer, mutably.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.next_layer_mut().read_size(1);
    /// ```
    pub fn next_layer_mut(&self) -> RefMut<'_, T> {
        RefMut::map(self.inner.core.borrow_mut(), |c| &mut c.transport)
    }

    /// True while the stream is open: after the handshake and before a close frame was
    /// sent or received or an error occurred (Beast's `is_open`).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(!rbeast::websocket::Stream::new(a).is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        self.inner.core.borrow().status == Status::Open
    }

    /// True when the last read finished a message (Beast's `is_message_done`); true
    /// before any read.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(rbeast::websocket::Stream::new(a).is_message_done());
    /// ```
    pub fn is_message_done(&self) -> bool {
        self.inner.core.borrow().rd_done
    }

    /// True when the current or last received message is text.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(rbeast::websocket::Stream::new(a).got_text());
    /// ```
    pub fn got_text(&self) -> bool {
        self.inner.core.borrow().rd_text
    }

    /// True when the current or last received message is binary.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(!rbeast::websocket::Stream::new(a).got_binary());
    /// ```
    pub fn got_binary(&self) -> bool {
        !self.got_text()
    }

    /// The close reason received from the peer (code `NONE` until one is received).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert!(!ws.reason().is_set());
    /// ```
    pub fn reason(&self) -> CloseReason {
        self.inner
            .core
            .borrow()
            .close_reason
            .as_deref()
            .copied()
            .unwrap_or_default()
    }

    /// A suggested number of bytes for the next read (Beast's `read_size_hint`): `initial`
    /// at the start of a message, the rest of the last frame of an uncompressed message,
    /// otherwise the larger of `initial` and the rest of the current frame; never more than
    /// `read_message_max` (when set).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert_eq!(ws.read_size_hint(1536), 1536);
    /// ```
    pub fn read_size_hint(&self, initial: usize) -> usize {
        let core = self.inner.core.borrow();
        let initial = initial.max(1);
        let remain = usize::try_from(core.rd_remain).unwrap_or(usize::MAX);
        let compressed = !core.rd_done && core.reader.message_compressed();
        let last_frame = core.rd_frame.is_some_and(|f| f.fin);
        let hint = if !compressed && core.rd_done {
            initial
        } else if !compressed && last_frame && remain > 0 {
            remain
        } else {
            initial.max(remain)
        };
        match usize::try_from(core.opts.read_message_max) {
            Ok(0) | Err(_) => hint,
            Ok(max) => hint.min(max),
        }
    }

    /// As [`read_size_hint`](Stream::read_size_hint) with `initial` = the room left in
    /// `buffer`, at most 1536 (Beast's `read_size_hint(DynamicBuffer&)`); 1 when `buffer`
    /// is full, so that the next read reports the overflow.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// let full = rbeast::net::FlatBuffer::with_max_size(0);
    /// assert_eq!(ws.read_size_hint_for(&full), 1);
    /// ```
    pub fn read_size_hint_for(&self, buffer: &FlatBuffer) -> usize {
        let room = buffer.max_size() - buffer.size();
        if room == 0 {
            return 1;
        }
        self.read_size_hint(room.min(1536)).min(room)
    }

    // ---------------------------------------------------------------- options

    /// Sends the next messages as binary (`true`) or text (`false`, the default).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_binary(true);
    /// assert!(ws.binary() && !ws.text());
    /// ```
    pub fn set_binary(&self, binary: bool) {
        self.core().opts.binary = binary;
    }

    /// True when messages are sent as binary.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(!rbeast::websocket::Stream::new(a).binary());
    /// ```
    pub fn binary(&self) -> bool {
        self.inner.core.borrow().opts.binary
    }

    /// Sends the next messages as text (`true`) or binary.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_text(false);
    /// assert!(ws.binary());
    /// ```
    pub fn set_text(&self, text: bool) {
        self.set_binary(!text);
    }

    /// True when messages are sent as text.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(rbeast::websocket::Stream::new(a).text());
    /// ```
    pub fn text(&self) -> bool {
        !self.binary()
    }

    /// Splits outgoing messages into frames of at most
    /// [`write_buffer_bytes`](Stream::write_buffer_bytes) (default on). Latched per message.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_auto_fragment(false);
    /// assert!(!ws.auto_fragment());
    /// ```
    pub fn set_auto_fragment(&self, on: bool) {
        self.core().opts.auto_fragment = on;
    }

    /// True when outgoing messages are fragmented automatically.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(rbeast::websocket::Stream::new(a).auto_fragment());
    /// ```
    pub fn auto_fragment(&self) -> bool {
        self.inner.core.borrow().opts.auto_fragment
    }

    /// Sets the write buffer size: the largest frame when fragmenting, and the size of the
    /// chunks a compressed message is cut into (default 4096). A message keeps the size in
    /// force when it began (as Beast, which sizes its write buffer as a message begins);
    /// the output's high-water mark, 16 times the size and at least 64 KiB, follows at once.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for less than 8 bytes, as Beast.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert!(ws.set_write_buffer_bytes(7).is_err());
    /// ws.set_write_buffer_bytes(16384).unwrap();
    /// assert_eq!(ws.write_buffer_bytes(), 16384);
    /// ```
    pub fn set_write_buffer_bytes(&self, n: usize) -> Result<(), Error> {
        if n < 8 {
            return Err(Error::InvalidArgument(
                ArgumentError::WriteBufferBytesTooSmall,
            ));
        }
        self.core().opts.set_write_buffer_bytes(n);
        Ok(())
    }

    /// The write buffer size.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert_eq!(rbeast::websocket::Stream::new(a).write_buffer_bytes(), 4096);
    /// ```
    pub fn write_buffer_bytes(&self) -> usize {
        self.inner.core.borrow().opts.write_buffer_bytes()
    }

    /// Sets the largest incoming message (default 16 MiB; 0 means no limit). A larger
    /// message fails the connection with [`Error::MessageTooBig`] and close code 1009.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_read_message_max(1024);
    /// assert_eq!(ws.read_message_max(), 1024);
    /// ```
    pub fn set_read_message_max(&self, max: u64) {
        self.core().set_read_message_max(max);
    }

    /// The largest incoming message.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert_eq!(rbeast::websocket::Stream::new(a).read_message_max(), 16 * 1024 * 1024);
    /// ```
    pub fn read_message_max(&self) -> u64 {
        self.inner.core.borrow().opts.read_message_max
    }

    /// Sets the timeouts (Beast's `set_option(timeout)`): the handshake bound (also for
    /// the closing handshake), the idle bound and keep-alive pings. On expiry the transport
    /// is closed without a close frame; the first operation to see it gets
    /// [`Error::Timeout`], the others [`Error::OperationAborted`].
    ///
    /// ```
    /// use rbeast::websocket::Timeout;
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_timeout(Timeout::suggested(rbeast::Role::Server));
    /// assert_eq!(ws.timeout(), Timeout::suggested(rbeast::Role::Server));
    /// ```
    pub fn set_timeout(&self, timeout: Timeout) {
        let mut core = self.core();
        if core.timers.timer.is_none() {
            let me: Weak<dyn crate::net::TimerTarget> = self.inner.me.clone();
            core.timers.timer = Some(InternalTimer::new(self.handle(), me));
        }
        core.timers.settings = timeout;
        core.restart_timer();
    }

    /// The timeout settings.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert_eq!(ws.timeout(), rbeast::websocket::Timeout::default());
    /// ```
    pub fn timeout(&self) -> Timeout {
        self.inner.core.borrow().timers.settings
    }

    /// Chooses the generator of client mask keys: a CSPRNG (`true`, the default) or a fast
    /// non-cryptographic one.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// rbeast::websocket::Stream::new(a).set_secure_prng(false);
    /// ```
    pub fn set_secure_prng(&self, secure: bool) {
        self.core().opts.secure_prng = secure;
    }

    /// Sets the permessage-deflate option (Beast's `set_option(permessage_deflate)`), used
    /// by the next handshake: a client offers compression when `client_enable` is set, a
    /// server accepts a valid offer when `server_enable` is set. Set it before the
    /// handshake.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for window bits outside 9..=15, `comp_level` above 9 or
    /// `mem_level` outside 1..=9 (the option is then unchanged).
    ///
    /// ```
    /// use rbeast::proto::deflate::PermessageDeflate;
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_permessage_deflate(PermessageDeflate { client_enable: true, ..Default::default() })?;
    /// assert!(ws.permessage_deflate().client_enable);
    /// let bad = PermessageDeflate { comp_level: 10, ..Default::default() };
    /// assert!(ws.set_permessage_deflate(bad).is_err());
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn set_permessage_deflate(&self, options: PermessageDeflate) -> Result<(), Error> {
        options.validate()?;
        let me: Weak<dyn crate::net::TimerTarget> = self.inner.me.clone();
        let handle = self.handle();
        self.core().pmd.set_opts(options, || {
            InternalTimer::tagged(handle, me, IDLE_RELEASE_TIMER)
        });
        Ok(())
    }

    /// The permessage-deflate option (Beast's `get_option(permessage_deflate&)`).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert!(!ws.permessage_deflate().client_enable);
    /// ```
    pub fn permessage_deflate(&self) -> PermessageDeflate {
        self.inner.core.borrow().pmd.opts()
    }

    /// What the last handshake agreed on for permessage-deflate (Beast's `get_status`):
    /// `active` with the window bits in force, or inactive.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// assert!(!ws.permessage_deflate_status().active);
    /// ```
    pub fn permessage_deflate_status(&self) -> PermessageDeflateStatus {
        PermessageDeflateStatus::from(self.inner.core.borrow().hs.negotiated.deflate)
    }

    /// Compresses the next messages when permessage-deflate is in force (`true`, the
    /// default) or sends them uncompressed (Beast's `compress(bool)`). Latched when a
    /// message starts.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_compress(false);
    /// assert!(!ws.compress());
    /// ```
    pub fn set_compress(&self, on: bool) {
        self.core().pmd.compress = on;
    }

    /// True when messages are compressed if permessage-deflate is in force.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert!(rbeast::websocket::Stream::new(a).compress());
    /// ```
    pub fn compress(&self) -> bool {
        self.inner.core.borrow().pmd.compress
    }

    /// Sets the observer of received pings, pongs and close frames (Beast's
    /// `control_callback`). It runs from the run loop before the read that received the
    /// frame completes; for a close frame it gets the reason text. While 16 of its calls
    /// are queued and have not run, the stream parses no further control frame.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_control_callback(|kind, payload| println!("{kind:?} {payload:?}"));
    /// ```
    pub fn set_control_callback(&self, callback: impl FnMut(FrameType, &[u8]) + 'static) {
        let observer: ControlCallback = Rc::new(ControlObserver::new(callback));
        self.core().control = Some(observer);
    }

    /// Removes the control callback.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// rbeast::websocket::Stream::new(a).clear_control_callback();
    /// ```
    pub fn clear_control_callback(&self) {
        self.core().control = None;
    }

    // ---------------------------------------------------------------- handshake

    /// Sets the decorator of the client's upgrade request: it runs after the built-in
    /// fields are set (Beast's `stream_base::decorator` for requests). It must not call
    /// this stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_request_decorator(|req| {
    ///     req.headers_mut().insert("user-agent", "rbeast-client".parse().unwrap());
    /// });
    /// ```
    pub fn set_request_decorator(&self, decorator: impl FnMut(&mut RequestType) + 'static) {
        self.core().hs.hooks_mut().request_decorator = Some(Rc::new(RefCell::new(decorator)));
    }

    /// Sets the decorator of every response the server sends, success or error (Beast's
    /// `stream_base::decorator` for responses). A `Server` field is added only when the
    /// decorator sets none. It must not call this stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_response_decorator(|res| {
    ///     res.headers_mut().insert("server", "my-server".parse().unwrap());
    /// });
    /// ```
    pub fn set_response_decorator(&self, decorator: impl FnMut(&mut ResponseType) + 'static) {
        self.core().hs.hooks_mut().response_decorator = Some(Rc::new(RefCell::new(decorator)));
    }

    /// Sets the accept hook (beyond Beast): it sees every valid upgrade request and may
    /// choose a subprotocol, add response fields, or reject with a custom response (the
    /// accept then completes with [`Error::Rejected`]). It must not call this stream.
    ///
    /// ```
    /// use rbeast::proto::handshake::{offered_subprotocols, AcceptDecision};
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_accept_hook(|req| {
    ///     if offered_subprotocols(req).contains(&"chat") {
    ///         AcceptDecision::accept().with_subprotocol("chat")
    ///     } else {
    ///         AcceptDecision::reject(http::StatusCode::BAD_REQUEST, "chat only")
    ///     }
    /// });
    /// ```
    pub fn set_accept_hook(&self, hook: impl FnMut(&RequestType) -> AcceptDecision + 'static) {
        self.core().hs.hooks_mut().accept_hook = Some(Rc::new(RefCell::new(hook)));
    }

    /// Sets the subprotocols a client offers (`Sec-WebSocket-Protocol`), in order of
    /// preference.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// ws.set_subprotocols(vec!["v2.chat".into(), "v1.chat".into()]);
    /// ```
    pub fn set_subprotocols(&self, protocols: Vec<String>) {
        self.core().hs.hooks_mut().subprotocols = protocols;
    }

    /// The subprotocol agreed on by the last handshake, if any.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// assert_eq!(rbeast::websocket::Stream::new(a).subprotocol(), None);
    /// ```
    pub fn subprotocol(&self) -> Option<String> {
        self.inner.core.borrow().hs.negotiated.subprotocol.clone()
    }

    /// Sets the largest HTTP header accepted during the handshake (default 8 KiB; Beast
    /// uses 1536 bytes). A larger one fails with [`Error::HeaderTooLarge`].
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// rbeast::websocket::Stream::new(a).set_max_handshake_bytes(1536);
    /// ```
    pub fn set_max_handshake_bytes(&self, n: usize) {
        self.core().hs.hooks_mut().parser.max_header_bytes = n;
    }

    /// Performs the client handshake (Beast's `async_handshake`): sends the upgrade request
    /// for `host` (sent verbatim in `Host`; append `:port` as Beast's examples do) and
    /// `target`, and checks the response. The handler gets `Ok(())` once the stream is open.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`; no byte count. Use
    /// [`async_handshake_response`](Stream::async_handshake_response) to see the response.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: `host`, `target` or a subprotocol cannot be sent.
    /// - A response that fails the checks: an error of
    ///   [`Condition::HandshakeFailed`](crate::Condition::HandshakeFailed), such as
    ///   [`Error::UpgradeDeclined`] (status not 101), [`Error::BadSecAccept`],
    ///   [`Error::BadExtensionReply`] or [`Error::BadSubprotocol`]; [`Error::BadHttp`] or
    ///   [`Error::HeaderTooLarge`] for a response that cannot be parsed or is larger than
    ///   [`set_max_handshake_bytes`](Stream::set_max_handshake_bytes).
    /// - [`Error::Eof`]: the server closed the connection before a whole response.
    /// - [`Error::Timeout`]: the `handshake_timeout` of [`set_timeout`](Stream::set_timeout)
    ///   expired; transport errors.
    /// - [`Error::OperationAborted`]: the stream is not new (it is open, closed or failed);
    ///   a stream handshakes once.
    ///
    /// After an error of the exchange (all but `InvalidArgument` and `OperationAborted`)
    /// the stream is failed.
    ///
    /// # Concurrency
    /// Runs alone: a second handshake or accept while it is outstanding completes with
    /// [`Error::AlreadyStarted`]; reads, writes, pings and closes started before it completes
    /// get [`Error::OperationAborted`].
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let sock = rbeast::net::TcpStream::new(&ctx);
    /// let ws = rbeast::websocket::Stream::new(sock);
    /// ws.async_handshake("example.com:80", "/", |r| println!("{r:?}"));
    /// ```
    pub fn async_handshake(
        &self,
        host: &str,
        target: &str,
        handler: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        self.async_handshake_response(host, target, move |r, _| handler(r));
    }

    /// As [`async_handshake`](Stream::async_handshake), and hands back the server's HTTP
    /// response whenever one was received (also when it was rejected, so that a `4xx` body
    /// can be shown).
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>, Option<ResponseType>)`: the result and the response, which
    /// is `None` when none was received (Beast's `async_handshake(res, host, target, h)`).
    ///
    /// # Errors
    /// As [`async_handshake`](Stream::async_handshake).
    ///
    /// # Concurrency
    /// As [`async_handshake`](Stream::async_handshake): runs alone.
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let sock = rbeast::net::TcpStream::new(&ctx);
    /// let ws = rbeast::websocket::Stream::new(sock);
    /// ws.async_handshake_response("example.com:80", "/", |r, res| {
    ///     if let Some(res) = res {
    ///         println!("{r:?}: {}", res.status());
    ///     }
    /// });
    /// ```
    pub fn async_handshake_response(
        &self,
        host: &str,
        target: &str,
        handler: impl FnOnce(Result<(), Error>, Option<ResponseType>) + 'static,
    ) {
        let handler: ClientHandler = Box::new(handler);
        if self.handle().is_shut_down() {
            return;
        }
        let started = {
            let mut core = self.core();
            match self.handshake_admission(&core) {
                Err(e) => Err((handler, e)),
                Ok(()) => core.start_client_handshake(host, target, handler),
            }
        };
        match started {
            Ok(()) => self.handle().work_started(),
            Err((handler, e)) => {
                self.handle().post(move || handler(Err(e), None));
                return;
            }
        }
        self.inner.drive();
    }

    /// Reads the HTTP upgrade request from the next layer and answers it (Beast's
    /// `async_accept`). On a failed check the error response is still sent (400, or 426
    /// for a bad version), then the handler gets the error.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`; no byte count. `Ok(())` once the 101 response was
    /// written and the stream is open.
    ///
    /// # Errors
    /// - A request that fails the checks: an error of
    ///   [`Condition::HandshakeFailed`](crate::Condition::HandshakeFailed), such as
    ///   [`Error::BadMethod`], [`Error::NoSecKey`] or [`Error::BadSecVersion`], after the
    ///   error response was sent; [`Error::Rejected`] when the
    ///   [accept hook](Stream::set_accept_hook) rejected the request (its response was sent);
    ///   [`Error::InvalidArgument`] when the hook chose a subprotocol the client did not
    ///   offer (a 500 response was sent).
    /// - [`Error::BadHttp`], [`Error::HeaderTooLarge`]: the request cannot be parsed or is
    ///   larger than [`set_max_handshake_bytes`](Stream::set_max_handshake_bytes); nothing is
    ///   sent.
    /// - [`Error::Closed`]: the client closed the connection before a whole request (as in
    ///   Beast).
    /// - [`Error::Timeout`]: the `handshake_timeout` of [`set_timeout`](Stream::set_timeout)
    ///   expired; transport errors.
    /// - [`Error::OperationAborted`]: the stream is not new (it is open, closed or failed).
    ///
    /// After an error of the exchange the stream is failed; the transport is left open, as
    /// in Beast.
    ///
    /// # Concurrency
    /// Runs alone: a second accept or handshake while it is outstanding completes with
    /// [`Error::AlreadyStarted`]; reads, writes, pings and closes started before it completes
    /// get [`Error::OperationAborted`].
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let sock = rbeast::net::TcpStream::new(&ctx);
    /// let ws = rbeast::websocket::Stream::new(sock);
    /// ws.async_accept(|r| println!("{r:?}"));
    /// ```
    pub fn async_accept(&self, handler: impl FnOnce(Result<(), Error>) + 'static) {
        self.async_accept_with_buffer(&[], handler);
    }

    /// As [`async_accept`](Stream::async_accept), first consuming `already_read`: bytes
    /// the application read from the transport (bytes after the request are frame data).
    /// The bytes are copied before this call returns.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`, as [`async_accept`](Stream::async_accept).
    ///
    /// # Errors
    /// As [`async_accept`](Stream::async_accept); `already_read` counts towards
    /// [`set_max_handshake_bytes`](Stream::set_max_handshake_bytes)
    /// ([`Error::HeaderTooLarge`], where Beast reports `buffer_overflow` past 1536 bytes).
    ///
    /// # Concurrency
    /// As [`async_accept`](Stream::async_accept): runs alone.
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let sock = rbeast::net::TcpStream::new(&ctx);
    /// let ws = rbeast::websocket::Stream::new(sock);
    /// ws.async_accept_with_buffer(b"GET / HTTP/1.1\r\n", |r| println!("{r:?}"));
    /// ```
    pub fn async_accept_with_buffer(
        &self,
        already_read: &[u8],
        handler: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let handler: WaitHandler = Box::new(handler);
        self.start_accept(handler, |core, handler| {
            core.start_accept(already_read, handler)
        });
    }

    /// Answers an upgrade request the application already read (Beast's
    /// `async_accept(req)`), for servers that read HTTP first and route upgrades with
    /// [`is_upgrade`](crate::proto::handshake::is_upgrade). Nothing is read from the
    /// transport before the response; the request's header is copied and its body ignored.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`, as [`async_accept`](Stream::async_accept).
    ///
    /// # Errors
    /// As [`async_accept`](Stream::async_accept), less the errors of reading a request
    /// ([`Error::BadHttp`], [`Error::HeaderTooLarge`], [`Error::Closed`]).
    ///
    /// # Concurrency
    /// As [`async_accept`](Stream::async_accept): runs alone.
    ///
    /// ```no_run
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let sock = rbeast::net::TcpStream::new(&ctx);
    /// # let req = http::Request::new(());
    /// let ws = rbeast::websocket::Stream::new(sock);
    /// ws.async_accept_request(&req, |r| println!("{r:?}"));
    /// ```
    pub fn async_accept_request<B>(
        &self,
        request: &http::Request<B>,
        handler: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let handler: WaitHandler = Box::new(handler);
        let request = header_of(request);
        self.start_accept(handler, |core, handler| {
            core.start_accept_request(&request, handler)
        });
    }

    fn start_accept(&self, handler: WaitHandler, start: impl FnOnce(&mut Core<T>, WaitHandler)) {
        if self.handle().is_shut_down() {
            return;
        }
        {
            let mut core = self.core();
            if let Err(e) = self.handshake_admission(&core) {
                drop(core);
                self.handle().post_wait(handler, Err(e));
                return;
            }
            self.handle().work_started();
            start(&mut core, handler);
        }
        self.inner.drive();
    }

    /// A handshake runs alone, on a stream that is not open yet.
    fn handshake_admission(&self, core: &Core<T>) -> Result<(), Error> {
        if core.hs_op.is_some() {
            Err(Error::AlreadyStarted)
        } else if core.status != Status::Handshake {
            Err(Error::OperationAborted)
        } else {
            Ok(())
        }
    }

    // ---------------------------------------------------------------- operations

    /// Reads one whole message, appending its payload to `buffer` (Beast's `async_read`).
    ///
    /// Pings are answered and pongs observed on the way (the
    /// [control callback](Stream::set_control_callback) sees both); a close frame completes
    /// the closing handshake and the read with [`Error::Closed`]. A protocol violation sends
    /// the matching close code, closes the connection and completes with the violation's
    /// error. [`got_text`](Stream::got_text) tells the message's kind.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of payload
    /// bytes appended to `buffer` for the message, after inflation; on error, the bytes
    /// appended before it.
    ///
    /// # Errors
    /// - [`Error::Closed`]: the peer's close frame arrived; the stream answered it (with the
    ///   peer's code, or 1000), tore the transport down, and [`reason`](Stream::reason) holds
    ///   the peer's reason. An error while tearing down is reported instead.
    /// - A protocol violation (an error of
    ///   [`Condition::ProtocolViolation`](crate::Condition::ProtocolViolation), such as
    ///   [`Error::BadOpcode`], [`Error::BadFramePayload`] or [`Error::BadDeflateData`]) or
    ///   [`Error::MessageTooBig`] (past [`read_message_max`](Stream::set_read_message_max)):
    ///   the stream sent the close code of [`Error::close_code`] and tore the transport down.
    /// - [`Error::BufferOverflow`]: `buffer` would grow past its `max_size`; the stream is
    ///   failed, no close frame is sent (as in Beast).
    /// - [`Error::OperationAborted`]: an [`async_close`](Stream::async_close) took over the
    ///   read side; the read completes after the close.
    /// - [`Error::Eof`], [`Error::Io`], [`Error::Timeout`] (the idle bound, or the handshake
    ///   bound during the closing handshake) and the other
    ///   [errors every operation can complete with](Stream#errors-every-operation-can-complete-with).
    ///
    /// # Concurrency
    /// One read at a time: a second `async_read` or `async_read_some` while it is
    /// outstanding completes with [`Error::AlreadyStarted`]. It may run together with a
    /// write and a close. Pings are answered, and the peer's close frame seen, only while a
    /// read (or a close) is outstanding.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// let buffer = rbeast::net::FlatBuffer::new();
    /// ws.async_read(&buffer, |r, n| println!("{r:?}: {n} bytes"));
    /// ```
    pub fn async_read(
        &self,
        buffer: &FlatBuffer,
        handler: impl FnOnce(Result<(), Error>, usize) + 'static,
    ) {
        self.start_read(buffer, usize::MAX, true, IoHandler::new(handler));
    }

    /// Reads some payload of the current message (at most `limit` bytes, 0 for no limit),
    /// appending it to `buffer` (Beast's `async_read_some`). Check
    /// [`is_message_done`](Stream::is_message_done) to know whether the message ended.
    ///
    /// It completes as soon as it has delivered some payload: never more than `limit`
    /// bytes, and the payload of one frame at most. Empty frames that do not end a message
    /// are skipped; control frames are handled as by [`async_read`](Stream::async_read).
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of payload
    /// bytes this call appended to `buffer`, after inflation; it is 0 for an empty message
    /// (or the empty last frame of one), and on error it counts the bytes appended before the
    /// error.
    ///
    /// # Errors
    /// As [`async_read`](Stream::async_read).
    ///
    /// # Concurrency
    /// As [`async_read`](Stream::async_read): one read at a time, a second one gets
    /// [`Error::AlreadyStarted`].
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// let buffer = rbeast::net::FlatBuffer::new();
    /// ws.async_read_some(&buffer, 512, |r, n| println!("{r:?}: {n} bytes"));
    /// ```
    pub fn async_read_some(
        &self,
        buffer: &FlatBuffer,
        limit: usize,
        handler: impl FnOnce(Result<(), Error>, usize) + 'static,
    ) {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.start_read(buffer, limit, false, IoHandler::new(handler));
    }

    fn start_read(&self, buffer: &FlatBuffer, limit: usize, whole: bool, handler: IoHandler) {
        if self.handle().is_shut_down() {
            return;
        }
        {
            let mut core = self.core();
            let busy = core.read_op.is_some();
            if let Err(e) = core.admit(busy) {
                drop(core);
                self.handle().post_io(handler, Err(e), 0);
                return;
            }
            core.arm_idle();
            let at_once = core.read_message_at_start(buffer, limit);
            if let Some(Ok(n)) = at_once {
                // A whole message was buffered: the read is done before it is stored.
                drop(core);
                self.handle().post_io(handler, Ok(()), n);
                return;
            }
            self.handle().work_started();
            core.read_op = Some(ReadOp {
                buffer: buffer.clone(),
                limit,
                whole,
                handler,
                n: 0,
            });
            if let Some(Err(fault)) = at_once {
                core.fail_whole_message(self.handle(), Consumer::Read, fault);
                drop(core);
                self.inner.drive();
                return;
            }
        }
        self.inner.drive_read();
    }

    /// Sends a whole message (Beast's `async_write`): `async_write_some(true, data)`.
    ///
    /// The message is text or binary per [`set_binary`](Stream::set_binary); after
    /// `async_write_some(false, ..)` it ends the message in progress. An empty `data` sends
    /// an empty message.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of bytes taken
    /// from `data`: all of it on success, never header or compressed bytes; on error, the
    /// bytes taken before it.
    ///
    /// # Errors
    /// As [`async_write_some`](Stream::async_write_some).
    ///
    /// # Concurrency
    /// As [`async_write_some`](Stream::async_write_some): one write at a time.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// ws.async_write(bytes::Bytes::from_static(b"hi"), |r, n| println!("{r:?} {n}"));
    /// ```
    pub fn async_write(
        &self,
        data: impl Buf + 'static,
        handler: impl FnOnce(Result<(), Error>, usize) + 'static,
    ) {
        self.async_write_some(true, data, handler);
    }

    /// Sends part of a message (Beast's `async_write_some`). The first part of a message
    /// is sent as text or binary per [`set_binary`](Stream::set_binary); later parts are
    /// continuations; `fin` ends the message. The payload may be masked and fragmented per
    /// the settings. The handler gets the bytes taken from `data` (never header bytes).
    ///
    /// The write completes once its frames are queued in the connection's output (see
    /// [corked writes](Stream#what-may-be-outstanding-at-once)); the context writes them to
    /// the transport at the end of the loop turn. With permessage-deflate a part that does
    /// not end the message may put nothing on the wire yet.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>, usize)`. `bytes_transferred` is the number of bytes taken
    /// from `data` (all of it on success), never header bytes nor the compressed size; on
    /// error, the bytes taken before it.
    ///
    /// # Errors
    /// - [`Error::OperationAborted`]: a close frame was sent (by
    ///   [`async_close`](Stream::async_close), or by a read answering the peer's close), also
    ///   when the close starts while this write waits for room; or the stream is not open.
    /// - A transport error met while the write waits for room in the output ([`Error::Io`],
    ///   [`Error::TestFailure`]), an expired timer ([`Error::Timeout`]), and the other
    ///   [errors every operation can complete with](Stream#errors-every-operation-can-complete-with).
    ///   An error met by a flush after the write completed goes to the next operation.
    ///
    /// # Concurrency
    /// One write at a time: a second `async_write` or `async_write_some` while this one is
    /// outstanding (its frames not yet queued) completes with [`Error::AlreadyStarted`]. It
    /// may run together with a read and a close; pongs, pings and close frames go out
    /// between its frames. Do not mix it with a [`WriteQueue`](super::WriteQueue) on the
    /// same stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// let w = ws.clone();
    /// ws.async_write_some(false, &b"part 1, "[..], move |r, _| {
    ///     if r.is_ok() {
    ///         w.async_write_some(true, &b"part 2"[..], |r, n| println!("{r:?} {n}"));
    ///     }
    /// });
    /// ```
    pub fn async_write_some(
        &self,
        fin: bool,
        data: impl Buf + 'static,
        handler: impl FnOnce(Result<(), Error>, usize) + 'static,
    ) {
        if self.handle().is_shut_down() {
            return; // as every handler once the context is gone: dropped uninvoked
        }
        let mut data = data;
        let (taken, flush, full) = {
            let mut core = self.core();
            let busy = core.write_op.is_some();
            let admitted = core.admit(busy).and_then(|()| {
                if core.close_started() {
                    Err(Error::OperationAborted)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = admitted {
                drop(core);
                let job = WriteJob::new(data, handler);
                self.handle().post_io(job.into_handler(), Err(e), 0);
                return;
            }
            let len = data.remaining();
            let chunk = data.chunk();
            let framed = if len < ZERO_COPY_MIN && chunk.len() >= len {
                // The common small write in one slice: framed without the buffers' methods.
                core.write_slice_in_one_frame(fin, &chunk[..len])
                    .then_some(len)
            } else {
                core.write_in_one_frame(fin, &mut data)
            };
            let framed = match framed {
                Some(taken) => Some((
                    Framing {
                        taken,
                        emitted: true,
                    },
                    true,
                )),
                // A fragmented write: its frames now, as far as the output takes them.
                None => core.write_in_frames(fin, &mut data),
            };
            match framed {
                Some((framing, true)) => {
                    (framing.taken, core.take_flush_request(), core.output_full())
                }
                left => {
                    let framing = left.map_or(Framing::default(), |(framing, _)| framing);
                    let start = core.message_start(len);
                    self.handle().work_started();
                    core.write_op = Some(Box::new(WriteOp {
                        job: WriteJob::new(data, handler),
                        fin,
                        framing,
                        start,
                    }));
                    drop(core);
                    self.inner.drive_write();
                    return;
                }
            }
        };
        // The frame is queued: the write is done. Its buffers go now, before its handler
        // runs, and the engine runs only to write a full output at once.
        drop(data);
        self.handle()
            .post_io(IoHandler::new(handler), Ok(()), taken);
        if flush {
            self.inner.request_flush();
        }
        if full {
            self.inner.drive();
        }
    }

    /// Sends a ping with `payload` (at most 125 bytes, copied before this call returns).
    /// The handler runs once the frame is queued; a ping after a close frame was sent or
    /// received gets [`Error::OperationAborted`]. The peer's pong reaches the
    /// [control callback](Stream::set_control_callback) while a read is outstanding.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`; no byte count. `Ok(())` means the frame is queued in
    /// the connection's output: it leaves at the end of the loop turn, between whole frames
    /// of any message being written. A transport error met then goes to the next operation.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: `payload` is longer than 125 bytes.
    /// - [`Error::OperationAborted`]: the stream is not open, or a close frame was sent or
    ///   received.
    /// - An error kept for the next operation (see
    ///   [errors every operation can complete with](Stream#errors-every-operation-can-complete-with)).
    ///
    /// # Concurrency
    /// Any number of pings and pongs may be started, alongside a read, a write and a
    /// close: each is queued at once and never gets [`Error::AlreadyStarted`] (Beast allows
    /// one ping or pong at a time).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// ws.async_ping(b"are you there?", |r| println!("{r:?}"));
    /// ```
    pub fn async_ping(&self, payload: &[u8], handler: impl FnOnce(Result<(), Error>) + 'static) {
        self.send_control(Opcode::Ping, payload, Box::new(handler));
    }

    /// Sends a pong with `payload` (at most 125 bytes, copied before this call returns);
    /// unsolicited pongs are allowed (RFC 6455 uses them as a one-way heartbeat). Received
    /// pings are answered by the stream itself; there is no need to call this for them.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`, as [`async_ping`](Stream::async_ping).
    ///
    /// # Errors
    /// As [`async_ping`](Stream::async_ping).
    ///
    /// # Concurrency
    /// As [`async_ping`](Stream::async_ping): any number, never
    /// [`Error::AlreadyStarted`].
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// ws.async_pong(b"", |r| println!("{r:?}"));
    /// ```
    pub fn async_pong(&self, payload: &[u8], handler: impl FnOnce(Result<(), Error>) + 'static) {
        self.send_control(Opcode::Pong, payload, Box::new(handler));
    }

    fn send_control(
        &self,
        opcode: Opcode,
        payload: &[u8],
        handler: Box<dyn FnOnce(Result<(), Error>)>,
    ) {
        if self.handle().is_shut_down() {
            return;
        }
        let result = {
            let mut core = self.core();
            let admitted = core.admit(false).and_then(|()| {
                if core.close_started() || core.status != Status::Open {
                    Err(Error::OperationAborted)
                } else if payload.len() > MAX_CONTROL_PAYLOAD {
                    Err(Error::InvalidArgument(ArgumentError::ControlPayloadTooLong))
                } else {
                    Ok(())
                }
            });
            if admitted.is_ok() {
                core.emit_control(opcode, payload);
            }
            admitted
        };
        self.handle().post_wait(handler, result);
        self.inner.drive();
    }

    /// Starts the closing handshake (Beast's `async_close`): sends a close frame with
    /// `reason` (an empty one when its code is `NONE`), reads and discards frames until the
    /// peer's close frame, then tears the connection down. A pending read ends with
    /// [`Error::OperationAborted`] once the close owns the read side.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>)`; no byte count. `Ok(())` once the peer's close frame
    /// arrived (its reason is in [`reason`](Stream::reason)) and the transport was torn down.
    ///
    /// # Errors
    /// - [`Error::InvalidArgument`]: a code that must not be sent, or a reason longer than
    ///   123 bytes (Beast sends anything; rbeast checks). Nothing is sent.
    /// - [`Error::OperationAborted`]: a close frame was already sent (by an earlier close,
    ///   or by a read that answered the peer's close), or the stream is not open.
    /// - A protocol violation found while discarding frames (an error of
    ///   [`Condition::ProtocolViolation`](crate::Condition::ProtocolViolation)): the transport
    ///   is torn down, no second close frame is sent.
    /// - [`Error::Eof`]: the peer closed the transport without a close frame.
    /// - [`Error::Timeout`]: the `handshake_timeout` of [`set_timeout`](Stream::set_timeout),
    ///   which also bounds the closing handshake, expired; transport errors.
    ///
    /// # Concurrency
    /// One close at a time: a second one while it is outstanding completes with
    /// [`Error::AlreadyStarted`]. It may be started while a read and a write are outstanding
    /// (Beast's rules): a write still waiting for room goes on, and the close frame follows
    /// its last frame (Beast's close waits for the write lock; if the peer's close arrives
    /// meanwhile and a read answers it, the write and then the close complete with
    /// [`Error::OperationAborted`]); a read goes on delivering the message it is in, and once
    /// it waits for the next frame the close owns the read side and the read completes with
    /// [`Error::OperationAborted`] after the close. Writes, pings and pongs started after it
    /// get [`Error::OperationAborted`].
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// ws.async_close(CloseReason::new(CloseCode::NORMAL), |r| println!("{r:?}"));
    /// ```
    pub fn async_close(
        &self,
        reason: impl Into<CloseReason>,
        handler: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let reason = reason.into();
        let handler: Box<dyn FnOnce(Result<(), Error>)> = Box::new(handler);
        if self.handle().is_shut_down() {
            return;
        }
        {
            let mut core = self.core();
            let busy = core.close_op.is_some();
            let admitted = core.admit(busy).and_then(|()| {
                if core.close_started() {
                    Err(Error::OperationAborted)
                } else if reason.is_set() {
                    reason.validate_for_send()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = admitted {
                drop(core);
                self.handle().post_wait(handler, Err(e));
                return;
            }
            self.handle().work_started();
            let deferred = core.write_op.is_some().then_some(reason);
            if deferred.is_none() {
                core.start_close(&reason);
            }
            core.close_op = Some(Box::new(CloseOp { handler, deferred }));
        }
        self.inner.drive();
    }
}

#[cfg(test)]
mod tests {
    use super::Stream;
    use crate::net::{FlatBuffer, IoContext};
    use crate::Role;

    /// A masked client frame: FIN, `opcode`, a zero mask key (payload unchanged), `payload`.
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    /// An open server stream and its transport (to append the client's bytes to).
    fn open_server(ctx: &IoContext) -> (crate::test::Stream, Stream<crate::test::Stream>) {
        let (_client, server) = crate::test::Stream::pair(ctx);
        let ws = Stream::new(server.clone());
        ws.open_unchecked(Role::Server);
        (server, ws)
    }

    #[test]
    fn a_read_waiting_for_input_keeps_only_the_partial_frame() {
        let ctx = IoContext::new().unwrap();
        let (input, ws) = open_server(&ctx);
        let mut bytes = frame(0x2, b"one");
        let second = frame(0x2, b"two");
        bytes.extend_from_slice(&second[..4]);
        input.append(&bytes);
        let buffer = FlatBuffer::new();
        let (w, b) = (ws.clone(), buffer.clone());
        ws.async_read(&buffer, move |r, n| {
            assert_eq!((r, n), (Ok(()), 3));
            b.clear();
            w.async_read(&b, |r, _| assert!(r.is_err(), "the peer never finishes"));
        });
        ctx.poll();
        let core = ws.inner.core.borrow();
        assert!(!core.rd_buf.is_lent(), "the lent buffer went back");
        assert_eq!(core.rd_buf.data(), &second[..4]);
        assert!(core.out.is_empty());
    }

    #[test]
    fn the_high_water_mark_follows_write_buffer_bytes() {
        let ctx = IoContext::new().unwrap();
        let (_input, ws) = open_server(&ctx);
        let high_water =
            |ws: &Stream<crate::test::Stream>| ws.inner.core.borrow().opts.high_water();
        assert_eq!(high_water(&ws), 64 * 1024, "the default, for 4 KiB frames");
        ws.set_write_buffer_bytes(8192).unwrap();
        assert_eq!(high_water(&ws), 128 * 1024, "16 frames");
        ws.set_write_buffer_bytes(1024).unwrap();
        assert_eq!(high_water(&ws), 64 * 1024, "never below 64 KiB");
        ws.set_write_buffer_bytes(usize::MAX / 2).unwrap();
        assert_eq!(high_water(&ws), usize::MAX, "saturated, not overflowed");
    }

    #[test]
    fn small_writes_in_one_slice_or_in_pieces_frame_the_same_bytes() {
        use bytes::Buf;
        use std::cell::Cell;
        use std::rc::Rc;
        let ctx = IoContext::new().unwrap();
        let (a, b) = crate::test::Stream::pair(&ctx);
        let (client, server) = (Stream::new(a), Stream::new(b));
        client.open_unchecked(Role::Client);
        server.open_unchecked(Role::Server);
        let pieces = (&b"split "[..]).chain(&b"message"[..]);
        client.async_write(&b"one slice"[..], |r, n| assert_eq!((r, n), (Ok(()), 9)));
        client.async_write(pieces, |r, n| assert_eq!((r, n), (Ok(()), 13)));
        server.async_write(&b"reply"[..], |r, n| assert_eq!((r, n), (Ok(()), 5)));
        ctx.poll();
        let read = Rc::new(Cell::new(0));
        let got = FlatBuffer::new();
        let messages = [
            (&server, &b"one slice"[..]),
            (&server, b"split message"),
            (&client, b"reply"),
        ];
        for (ws, expected) in messages {
            let (g, read) = (got.clone(), read.clone());
            ws.async_read(&got, move |r, _| {
                assert_eq!(r, Ok(()));
                assert_eq!(&*g.data(), expected);
                g.clear();
                read.set(read.get() + 1);
            });
            ctx.poll();
        }
        assert_eq!(read.get(), 3, "every message arrived whole");
    }

    #[test]
    fn unread_messages_stay_buffered_for_the_next_read() {
        let ctx = IoContext::new().unwrap();
        let (input, ws) = open_server(&ctx);
        let mut bytes = frame(0x2, b"one");
        bytes.extend_from_slice(&frame(0x1, b"two"));
        input.append(&bytes);
        let buffer = FlatBuffer::new();
        ws.async_read(&buffer, |r, n| assert_eq!((r, n), (Ok(()), 3)));
        ctx.poll();
        assert_eq!(&*buffer.data(), b"one");
        let got = buffer.clone();
        ws.async_read(&buffer, move |r, n| {
            assert_eq!((r, n), (Ok(()), 3));
            assert_eq!(&*got.data(), b"onetwo");
        });
        ctx.poll();
        assert!(ws.got_text());
        assert!(ws.inner.core.borrow().rd_buf.is_empty());
    }
}
