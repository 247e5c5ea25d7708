//! The state of a WebSocket stream and the engine that advances its operations on
//! readiness events.
//!
//! All composed operations share one engine: bytes read from the transport are parsed into
//! frames for whichever operation owns the read side (a read, a closing drain, a teardown),
//! and every frame written is appended to the corked [`Output`], flushed once per loop turn
//! with one vectored write. Control frames (pongs, close replies) are appended between
//! whole frames, so they interleave with large fragmented messages without any lock.
//! Completions are queued on the context, never run inline.
//!
//! This module holds the state and the engine's loop ([`Core::drive`]); each side of the
//! engine is a module of its own: [`read`] (parsing, payload delivery), [`control`] (pings,
//! pongs, the control callback), [`write`](mod@write) (framing), [`flushing`] (the corked output) and
//! [`close`] (the closing handshake and the teardown). Whole-message reads, direct
//! payload reads, permessage-deflate, the handshake and the timers extend `Core` from
//! their own modules beside this one.

mod close;
mod control;
mod flushing;
mod read;
mod write;

use super::deflate::PmdState;
use super::handshake::{HandshakeOp, HandshakeSettings};
use super::output::Output;
use super::read_buffer::ReadBuffer;
use super::timeout::Timers;
use crate::net::{Handle, Transport, WaitHandler};
use crate::proto::close::CloseReason;
use crate::proto::frame::{FrameHeader, FrameReader, Opcode, ReadRules};
use crate::proto::utf8::Utf8Validator;
use crate::{Error, Role};

pub(crate) use close::CloseOp;
use close::Teardown;
pub(crate) use control::{ControlCallback, ControlObserver};
pub(crate) use read::{Consumer, ReadOp, Step};
pub(crate) use write::{Framing, WriteOp, ZERO_COPY_MIN};

/// Rounds of the engine per event, so that one busy peer cannot starve the others.
const MAX_ROUNDS: usize = 64;

/// Beast's `status_`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Handshake,
    Open,
    Closing,
    Closed,
    Failed,
}

/// The stream's options (Beast's `set_option` values and setters).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) binary: bool,
    pub(crate) auto_fragment: bool,
    write_buffer_bytes: usize,
    /// [`high_water`](Options::high_water), kept beside the setting it follows: it is
    /// tested after every read and write.
    high_water: usize,
    pub(crate) read_message_max: u64,
    pub(crate) secure_prng: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            binary: false,
            auto_fragment: true,
            write_buffer_bytes: 4096,
            high_water: Options::high_water_for(4096),
            read_message_max: ReadRules::DEFAULT_READ_MESSAGE_MAX,
            secure_prng: true,
        }
    }
}

impl Options {
    /// Output beyond this is written at once instead of at the end of the loop turn, and a
    /// write waits for the transport before it completes.
    #[inline]
    pub(crate) fn high_water(&self) -> usize {
        self.high_water
    }

    const fn high_water_for(write_buffer_bytes: usize) -> usize {
        let scaled = write_buffer_bytes.saturating_mul(16);
        if scaled > 64 * 1024 {
            scaled
        } else {
            64 * 1024
        }
    }

    /// The size of the frames a write is cut into (`write_buffer_bytes`).
    #[inline]
    pub(crate) fn write_buffer_bytes(&self) -> usize {
        self.write_buffer_bytes
    }

    /// Sets `write_buffer_bytes` and the high-water mark that follows from it.
    pub(crate) fn set_write_buffer_bytes(&mut self, n: usize) {
        self.write_buffer_bytes = n;
        self.high_water = Options::high_water_for(n);
    }

    /// The opcode of a new message: `binary` latched at its start (as Beast).
    pub(crate) fn message_opcode(&self) -> Opcode {
        if self.binary {
            Opcode::Binary
        } else {
            Opcode::Text
        }
    }
}

pub(crate) struct Core<T: Transport> {
    pub(crate) transport: T,
    pub(crate) role: Role,
    pub(crate) status: Status,
    pub(crate) opts: Options,
    pub(crate) control: Option<ControlCallback>,

    // read side
    pub(crate) reader: FrameReader,
    pub(crate) rd_buf: ReadBuffer,
    pub(crate) rd_frame: Option<FrameHeader>,
    pub(crate) rd_remain: u64,
    pub(crate) rd_phase: usize,
    /// A control frame whose payload is not all in yet (boxed: rare).
    pub(crate) pending_control: Option<Box<(FrameHeader, usize)>>,
    pub(crate) rd_done: bool,
    pub(crate) rd_text: bool,
    pub(crate) utf8: Utf8Validator,
    /// The peer's close reason, once one is received (boxed: most streams never see one).
    pub(crate) close_reason: Option<Box<CloseReason>>,

    // write side
    pub(crate) out: Output,
    pub(crate) wr_cont: bool,
    pub(crate) wr_opcode: Opcode,
    pub(crate) wr_auto_fragment: bool,
    /// `write_buffer_bytes` latched at the message's start (as Beast): the size its frames
    /// are cut to.
    pub(crate) wr_frame_bytes: usize,
    pub(crate) wr_close: bool,
    pub(crate) flush_scheduled: bool,
    /// A read completed since the output was last considered for flushing.
    pub(crate) read_done: bool,
    /// Consecutive turns the output was held back.
    holds: u32,
    pub(crate) flush_blocked: bool,

    // operations
    pub(crate) read_op: Option<ReadOp>,
    /// A read parked behind a close that owns the read side; it ends `OperationAborted`.
    pub(crate) read_suspended: bool,
    /// A write that could not be framed at once (boxed: most writes are framed as they
    /// start and never stored here).
    pub(crate) write_op: Option<Box<WriteOp>>,
    pub(crate) close_op: Option<Box<CloseOp>>,
    pub(crate) hs_op: Option<Box<HandshakeOp>>,
    pub(crate) hs: HandshakeSettings,
    pub(crate) timers: Timers,
    /// permessage-deflate: the option, the codec and its per-message state.
    pub(crate) pmd: PmdState,
    teardown: Option<Box<Teardown>>,
    /// A real error was delivered; later operations see `OperationAborted`.
    pub(crate) ec_delivered: bool,
    /// An error met with no operation pending, for the next operation.
    pub(crate) pending_error: Option<Box<Error>>,
}

impl<T: Transport> Core<T> {
    pub(crate) fn new(transport: T) -> Core<T> {
        Core {
            transport,
            role: Role::Client,
            status: Status::Handshake,
            opts: Options::default(),
            control: None,
            reader: FrameReader::new(ReadRules::new(Role::Client)),
            rd_buf: ReadBuffer::default(),
            rd_frame: None,
            rd_remain: 0,
            rd_phase: 0,
            pending_control: None,
            rd_done: true,
            rd_text: true,
            utf8: Utf8Validator::new(),
            close_reason: None,
            out: Output::default(),
            wr_cont: false,
            wr_opcode: Opcode::Text,
            wr_auto_fragment: true,
            wr_frame_bytes: 4096,
            wr_close: false,
            flush_scheduled: false,
            read_done: false,
            holds: 0,
            flush_blocked: false,
            read_op: None,
            read_suspended: false,
            write_op: None,
            close_op: None,
            hs_op: None,
            hs: HandshakeSettings::default(),
            timers: Timers::default(),
            pmd: PmdState::default(),
            teardown: None,
            ec_delivered: false,
            pending_error: None,
        }
    }

    /// Starts the open phase in `role`. Bytes already in the read buffer (read after the
    /// handshake) are frame data.
    pub(crate) fn open(&mut self, role: Role) {
        self.role = role;
        self.status = Status::Open;
        let mut rules = ReadRules::new(role);
        rules.read_message_max = self.opts.read_message_max;
        self.reader = FrameReader::new(rules);
        self.rd_frame = None;
        self.rd_remain = 0;
        self.pending_control = None;
        self.rd_done = true;
        self.wr_cont = false;
        self.wr_close = false;
        self.close_reason = None;
        self.ec_delivered = false;
        self.pending_error = None;
    }

    pub(crate) fn set_read_message_max(&mut self, max: u64) {
        self.opts.read_message_max = max;
        let mut rules = *self.reader.rules();
        rules.read_message_max = max;
        self.reader.set_rules(rules);
    }

    /// Beast's "first error wins": the first real error goes to one operation, later ones
    /// see `OperationAborted`.
    pub(crate) fn deliver(&mut self, e: Error) -> Error {
        if self.ec_delivered {
            return Error::OperationAborted;
        }
        self.ec_delivered = true;
        e
    }

    /// Checks what every initiation checks. `Ok` means the operation may start.
    pub(crate) fn admit(&mut self, busy: bool) -> Result<(), Error> {
        if let Some(e) = self.pending_error.take() {
            self.ec_delivered = true;
            return Err(*e);
        }
        match self.status {
            Status::Closed | Status::Failed | Status::Handshake => {
                return Err(Error::OperationAborted)
            }
            Status::Open | Status::Closing => {}
        }
        if busy {
            return Err(Error::AlreadyStarted);
        }
        Ok(())
    }

    /// The connection failed with `e` outside any protocol exchange (a transport error):
    /// the first pending operation gets `e`, the others `OperationAborted`.
    pub(crate) fn fail_all(&mut self, handle: &Handle, e: Error) {
        self.status = Status::Failed;
        self.out.discard();
        self.teardown = None;
        let mut e = Some(e);
        let mut next = |core: &mut Core<T>| match e.take() {
            Some(e) => core.deliver(e),
            None => Error::OperationAborted,
        };
        let any_pending = self.read_op.is_some()
            || self.write_op.is_some()
            || self.close_op.is_some()
            || self.hs_op.is_some();
        if let Some(op) = self.read_op.take() {
            let err = next(self);
            handle.complete_io(op.handler, Err(err), op.n);
        }
        if let Some(op) = self.write_op.take() {
            let err = next(self);
            op.complete(handle, Err(err));
        }
        if let Some(h) = self.take_close_handler() {
            let err = next(self);
            handle.complete_wait(h, Err(err));
        }
        if let Some(op) = self.hs_op.take() {
            let err = next(self);
            op.complete(handle, Err(err), None);
        }
        if !any_pending {
            if let Some(e) = e.take() {
                if !self.ec_delivered {
                    self.pending_error = Some(Box::new(e));
                }
            }
        }
        self.read_suspended = false;
    }

    /// Advances every operation as far as the transport allows, for at most
    /// `MAX_ROUNDS` rounds. Returns true when it stopped at that bound with work left: the
    /// caller must drive again on a later turn, since no new readiness edge will come.
    pub(crate) fn drive(&mut self, handle: &Handle) -> bool {
        for _ in 0..MAX_ROUNDS {
            let mut progressed = false;
            if self.flush_blocked && self.transport.readiness().is_writable() {
                progressed |= self.flush_now(handle);
            }
            progressed |= self.advance_handshake(handle);
            progressed |= self.advance_write(handle);
            progressed |= self.start_deferred_close();
            if self.output_full() {
                progressed |= self.flush_now(handle);
            }
            progressed |= self.advance_input(handle);
            progressed |= self.advance_teardown(handle);
            if !progressed {
                let again = self.awaits_control_calls();
                self.update_timer();
                self.release_read_buffer(again);
                return again;
            }
        }
        self.update_timer();
        self.release_read_buffer(true);
        true
    }

    /// Gives the lent read buffer back to the context at the end of a drive, unless parsing
    /// is about to go on: the engine will run again (`again`), or unparsed input waits for
    /// the application's next read. When every operation waits for input, only a partial
    /// frame stays, in a small buffer of the stream's own.
    #[inline(always)]
    pub(crate) fn release_read_buffer(&mut self, again: bool) {
        if !self.rd_buf.is_lent() {
            return;
        }
        // The common case, decided without the general test: a read just completed on an
        // open stream and the next message is already buffered.
        if !self.rd_buf.is_empty()
            && self.status == Status::Open
            && self.read_op.is_none()
            && self.close_op.is_none()
            && self.teardown.is_none()
        {
            return;
        }
        self.release_read_buffer_slow(again);
    }

    #[inline(never)]
    fn release_read_buffer_slow(&mut self, again: bool) {
        let awaited =
            self.consumer().is_none() && matches!(self.status, Status::Open | Status::Closing);
        if !self.rd_buf.is_empty() && (again || awaited) {
            return;
        }
        self.rd_buf.give_back(self.transport.handle().buffers());
    }

    /// Takes every parked handler out, for the caller to drop with no borrow held (the
    /// context is shutting down).
    #[allow(clippy::type_complexity)]
    pub(crate) fn take_all_handlers(
        &mut self,
    ) -> (
        Option<ReadOp>,
        Option<Box<WriteOp>>,
        Option<WaitHandler>,
        Option<Box<HandshakeOp>>,
        Option<ControlCallback>,
    ) {
        (
            self.read_op.take(),
            self.write_op.take(),
            self.take_close_handler(),
            self.hs_op.take(),
            self.control.take(),
        )
    }
}
