//! The state of a WebSocket stream and the engine that advances its operations on
//! readiness events.
//!
//! All composed operations share one engine: bytes read from the transport are parsed into
//! frames for whichever operation owns the read side (a read, a closing drain, a teardown),
//! and every frame written is appended to the corked [`Output`], flushed once per loop turn
//! with one vectored write. Control frames (pongs, close replies) are appended between
//! whole frames, so they interleave with large fragmented messages without any lock.
//! Completions are queued on the context, never run inline.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::rc::Rc;

use bytes::Buf;

use super::deflate::PmdState;
use super::handshake::{HandshakeOp, HandshakeSettings};
use super::output::Output;
use super::read_buffer::ReadBuffer;
use super::timeout::Timers;
use super::FrameType;
use crate::net::{FlatBuffer, Handle, IoHandler, Transport, WaitHandler, WriteJob};
use crate::proto::close::{CloseCode, CloseReason};
use crate::proto::frame::{
    FrameHeader, FrameReader, Opcode, ReadRules, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};
use crate::proto::mask::{apply_mask, mask_copy, mask_key};
use crate::proto::utf8::Utf8Validator;
use crate::{Error, Role};

/// Unmasked payloads at least this long are queued without copying.
pub(crate) const ZERO_COPY_MIN: usize = 1024;
/// Turns in a row the output may be held back while buffered messages are answered.
const MAX_HOLDS: u32 = 64;
/// Rounds of the engine per event, so that one busy peer cannot starve the others.
const MAX_ROUNDS: usize = 64;
/// Calls of the control callback queued and not run yet at which parsing waits for them:
/// each holds a copy of its frame's payload, and a peer sending nothing but control
/// frames would otherwise make the queue as long as its input.
const CONTROL_CALLS_QUEUED_MAX: usize = 16;

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

/// An outstanding close (boxed: most streams never close this way).
pub(crate) struct CloseOp {
    pub(crate) handler: WaitHandler,
    /// The reason of a close started while a write was outstanding: its frame goes out once
    /// the write completes (Beast's close waits for the write lock).
    pub(crate) deferred: Option<CloseReason>,
}

pub(crate) struct ReadOp {
    pub(crate) buffer: FlatBuffer,
    /// Most payload bytes to deliver (read_some); `usize::MAX` for no limit.
    pub(crate) limit: usize,
    /// Read a whole message (async_read) rather than some of it.
    pub(crate) whole: bool,
    pub(crate) handler: IoHandler,
    pub(crate) n: usize,
}

pub(crate) struct WriteOp {
    /// The caller's buffers and handler, together (inline when small).
    pub(crate) job: WriteJob,
    pub(crate) fin: bool,
    pub(crate) framing: Framing,
}

/// How far a write's framing got.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Framing {
    /// Payload bytes framed (the handler's byte count).
    pub(crate) taken: usize,
    /// A frame was emitted (an empty write is one empty frame).
    pub(crate) emitted: bool,
}

impl WriteOp {
    /// The caller's buffers (what is left of them).
    pub(crate) fn data(&mut self) -> &mut dyn Buf {
        self.job.data()
    }

    /// Queues the handler with `result` and the payload bytes taken.
    pub(crate) fn complete(self, handle: &Handle, result: Result<(), Error>) {
        handle.complete_io(self.job.into_handler(), result, self.framing.taken);
    }
}

/// What a finished teardown completes.
enum AfterTeardown {
    /// A read that received the peer's close: `Error::Closed`.
    ReadClosed,
    /// A read that failed the connection with this error.
    ReadFailed(Error),
    /// The close operation (with the error met while draining, if any).
    Close(Option<Error>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TeardownPhase {
    Flush,
    Drain,
}

struct Teardown {
    phase: TeardownPhase,
    then: AfterTeardown,
    /// The server's shutdown of its sending side failed (before the drain).
    shutdown_error: Option<Error>,
}

/// Who consumes the frames read from the transport.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consumer {
    Read,
    CloseDrain,
}

/// The result of one parsing step.
pub(crate) enum Step {
    Progress,
    NeedInput,
    /// The consumer's operation ended (completed, or handed over to a teardown).
    Finished,
    /// A control frame waits, parsed no further: for room in the output (its reply goes
    /// there) or for the control callback's queued calls to run.
    Blocked,
}

/// The control callback, with the count of its calls queued and not run yet.
pub(crate) struct ControlObserver<F: ?Sized> {
    queued: Cell<usize>,
    callback: RefCell<F>,
}

impl<F: FnMut(FrameType, &[u8])> ControlObserver<F> {
    pub(crate) fn new(callback: F) -> ControlObserver<F> {
        ControlObserver {
            queued: Cell::new(0),
            callback: RefCell::new(callback),
        }
    }
}

pub(crate) type ControlCallback = Rc<ControlObserver<dyn FnMut(FrameType, &[u8])>>;

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

    /// True when the output should be flushed at the end of this loop turn.
    pub(crate) fn take_flush_request(&mut self) -> bool {
        if self.out.is_empty() || self.flush_scheduled || self.flush_blocked {
            return false;
        }
        self.flush_scheduled = true;
        true
    }

    // ---------------------------------------------------------------- error delivery

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

    // ---------------------------------------------------------------- writing

    /// The encoded header of a frame of `len` payload bytes (masked with a fresh key in the
    /// client role), with the output's stage made ready for it: the header bytes, their
    /// count and the mask key.
    #[inline(always)]
    fn frame_header(
        &mut self,
        fin: bool,
        opcode: Opcode,
        len: usize,
    ) -> ([u8; MAX_HEADER_LEN], usize, Option<[u8; 4]>) {
        let mask = match self.role {
            Role::Client => Some(mask_key(self.opts.secure_prng)),
            Role::Server => None,
        };
        let header = FrameHeader::new(fin, opcode, len as u64, mask);
        self.out.take_stage(self.transport.handle().buffers());
        let mut raw = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut raw);
        (raw, n, mask)
    }

    /// Appends one frame taking `len` bytes from `data`.
    pub(crate) fn emit_frame(&mut self, fin: bool, opcode: Opcode, data: &mut dyn Buf, len: usize) {
        let (raw, n, mask) = self.frame_header(fin, opcode, len);
        if mask.is_none() && len < ZERO_COPY_MIN {
            // The common small unmasked frame: header and payload staged together when the
            // payload is contiguous in the caller's buffers.
            let chunk = data.chunk();
            if chunk.len() >= len {
                self.out.push_frame(&raw, n, &chunk[..len]);
                data.advance(len);
                return;
            }
        }
        let staged = if mask.is_none() && len >= ZERO_COPY_MIN {
            0
        } else {
            len
        };
        self.out.push_header(&raw, n, staged);
        match mask {
            Some(key) => {
                let copy = self.out.push_from_buf(data, len);
                apply_mask(copy, key, 0);
            }
            None if len >= ZERO_COPY_MIN => self.out.push_shared(data.copy_to_bytes(len)),
            None => {
                self.out.push_from_buf(data, len);
            }
        }
    }

    /// Appends a control frame.
    pub(crate) fn emit_control(&mut self, opcode: Opcode, payload: &[u8]) {
        let mut data = payload;
        self.emit_frame(true, opcode, &mut data, payload.len());
    }

    /// Appends a close frame for `reason` (empty when it has no code).
    fn emit_close(&mut self, reason: &CloseReason) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let n = reason.encode(&mut payload).unwrap_or(0);
        self.emit_control(Opcode::Close, &payload[..n]);
        self.wr_close = true;
    }

    /// Emits frames for the pending write until it is done or the output is full.
    fn advance_write(&mut self, handle: &Handle) -> bool {
        let Some(mut op) = self.write_op.take() else {
            return false;
        };
        if self.wr_close || self.status != Status::Open {
            // Beast's `check_stop_now` on a closing stream: an abort, not a delivered error.
            op.complete(handle, Err(Error::OperationAborted));
            return true;
        }
        if self.pmd_write(&mut op) {
            return self.advance_write_deflate(handle, op);
        }
        let before = op.framing;
        let WriteOp { job, fin, framing } = &mut *op;
        if self.emit_frames(*fin, job.data(), framing) {
            op.complete(handle, Ok(()));
            return true;
        }
        let progressed = op.framing != before;
        self.write_op = Some(op);
        progressed
    }

    /// Emits frames of a write until all of `data` is framed (true) or the output is full
    /// (false), recording its progress in `framing`.
    fn emit_frames(&mut self, fin: bool, data: &mut dyn Buf, framing: &mut Framing) -> bool {
        loop {
            let remaining = data.remaining();
            if framing.emitted && remaining == 0 {
                return true;
            }
            if self.output_full() {
                return false;
            }
            if !self.wr_cont {
                // A new message: latch its settings (Beast latches them at message start).
                self.wr_opcode = self.opts.message_opcode();
                self.wr_auto_fragment = self.opts.auto_fragment;
            }
            let len = if self.wr_auto_fragment {
                remaining.min(self.opts.write_buffer_bytes())
            } else {
                remaining
            };
            let last = len == remaining;
            let fin = fin && last;
            let opcode = if self.wr_cont {
                Opcode::Continuation
            } else {
                self.wr_opcode
            };
            self.emit_frame(fin, opcode, data, len);
            self.wr_cont = !fin;
            framing.taken += len;
            framing.emitted = true;
        }
    }

    /// Emits the frames of a write just started when it is the only thing to do: the stream
    /// is open with nothing else in progress, and the frames fit below the high-water mark.
    /// Returns true when the write completed so; false when the whole engine must run.
    pub(crate) fn write_at_once(&mut self, handle: &Handle) -> bool {
        if self.status != Status::Open
            || self.teardown.is_some()
            || self.flush_blocked
            || self.output_full()
        {
            return false;
        }
        self.advance_write(handle);
        self.write_op.is_none() && self.status == Status::Open && !self.output_full()
    }

    /// Parses input for the read (or the close) in progress when that is all there is to
    /// do: the stream is open, no handshake, write or teardown is pending and the output is
    /// not blocked. Returns true when that finished the drive; false when the whole engine
    /// must run (also when parsing started something else: a teardown, a status change,
    /// output past the high-water mark). Once the read is done no other operation can
    /// advance, so the engine's confirming round is not needed.
    pub(crate) fn read_at_once(&mut self, handle: &Handle) -> bool {
        if !self.only_input_pending() {
            return false;
        }
        if self.rd_buf.is_empty()
            && !self.rd_buf.is_lent()
            && !self.transport.readiness().is_readable()
            && self.rd_remain == 0
            && self.pending_control.is_none()
        {
            // Nothing to parse and nothing to read: the read waits for input as it is.
            self.update_timer();
            return true;
        }
        if !self.read_buffered_message(handle) {
            self.advance_input(handle);
        }
        if !self.only_input_pending() || self.output_full() || self.awaits_control_calls() {
            return false;
        }
        self.update_timer();
        self.release_read_buffer(false);
        true
    }

    /// True when only input can advance an operation: see [`read_at_once`](Core::read_at_once).
    pub(crate) fn only_input_pending(&self) -> bool {
        self.status == Status::Open
            && self.teardown.is_none()
            && self.write_op.is_none()
            && self.hs_op.is_none()
            && !self.flush_blocked
    }

    /// Emits a write just started as one frame when that is all it takes: the stream is
    /// open with nothing else in progress, without permessage-deflate, the output is below
    /// the high-water mark, and the data goes as one frame (no fragmenting). Returns the
    /// payload bytes taken (all of `data`), or `None` when the write must be started as an
    /// operation. What [`advance_write`](Core::advance_write) would do for such a write,
    /// without storing it.
    pub(crate) fn write_in_one_frame(&mut self, fin: bool, data: &mut dyn Buf) -> Option<usize> {
        let len = data.remaining();
        let opcode = self.start_one_frame(fin, len)?;
        self.emit_frame(fin, opcode, data, len);
        Some(len)
    }

    /// Emits the frames of a write just started that takes several (it is fragmented), as
    /// many as the output takes below its high-water mark, when the write could go as one
    /// frame but for its size (see [`write_in_one_frame`](Core::write_in_one_frame)).
    /// Returns how far the framing got, with true when all of `data` is framed; `None`,
    /// with nothing emitted, when the write must be started as an operation from the
    /// start. What [`advance_write`](Core::advance_write) would do for such a write,
    /// without storing it unless it is left unfinished.
    pub(crate) fn write_in_frames(
        &mut self,
        fin: bool,
        data: &mut dyn Buf,
    ) -> Option<(Framing, bool)> {
        if !self.can_frame_at_once() {
            return None;
        }
        let mut framing = Framing::default();
        let done = self.emit_frames(fin, data, &mut framing);
        Some((framing, done))
    }

    /// As [`write_in_one_frame`](Core::write_in_one_frame) for a payload shorter than
    /// [`ZERO_COPY_MIN`] that is one slice of the caller's buffers: it is copied into the
    /// output with its header, without going through the buffers. False when the write
    /// must be started as an operation.
    pub(crate) fn write_slice_in_one_frame(&mut self, fin: bool, payload: &[u8]) -> bool {
        debug_assert!(payload.len() < ZERO_COPY_MIN);
        let Some(opcode) = self.start_one_frame(fin, payload.len()) else {
            return false;
        };
        let (raw, n, mask) = self.frame_header(fin, opcode, payload.len());
        match mask {
            None => self.out.push_frame(&raw, n, payload),
            Some(key) => {
                self.out.push_header(&raw, n, payload.len());
                let mut data = payload;
                let copy = self.out.push_from_buf(&mut data, payload.len());
                apply_mask(copy, key, 0);
            }
        }
        true
    }

    /// The opcode of a write of `len` bytes that can go as one frame now (the conditions of
    /// [`write_in_one_frame`](Core::write_in_one_frame)), with the message's settings
    /// latched as for a frame about to be emitted; `None` when it cannot.
    #[inline(always)]
    fn start_one_frame(&mut self, fin: bool, len: usize) -> Option<Opcode> {
        if !self.can_frame_at_once() {
            return None;
        }
        let (opcode, auto_fragment) = if self.wr_cont {
            (Opcode::Continuation, self.wr_auto_fragment)
        } else {
            (self.opts.message_opcode(), self.opts.auto_fragment)
        };
        if auto_fragment && len > self.opts.write_buffer_bytes() {
            return None;
        }
        if !self.wr_cont {
            // A new message: latch its settings (Beast latches them at message start).
            self.wr_opcode = opcode;
            self.wr_auto_fragment = auto_fragment;
        }
        self.wr_cont = !fin;
        Some(opcode)
    }

    /// True when a write just started can be framed as it starts: the stream is open with
    /// no teardown, no other write and no blocked output, without permessage-deflate, and
    /// the output is below the high-water mark.
    #[inline(always)]
    fn can_frame_at_once(&self) -> bool {
        self.status == Status::Open
            && self.teardown.is_none()
            && !self.flush_blocked
            && self.write_op.is_none()
            && !self.pmd.is_active()
            && !self.output_full()
    }

    /// True when the output is at or past its high-water mark (to be written at once).
    pub(crate) fn output_full(&self) -> bool {
        self.out.len() >= self.opts.high_water()
    }

    /// True when written output may let something advance: a write parked for room, a
    /// handshake reply or a teardown waiting for the output to go, a control frame waiting
    /// for room for its reply, or a status that changed (a failed write). An open stream
    /// with none of these has nothing to do after a flush.
    pub(crate) fn waits_for_output(&self) -> bool {
        self.write_op.is_some()
            || self.hs_op.is_some()
            || self.teardown.is_some()
            || self.status != Status::Open
            || self.pending_control.is_some()
    }

    /// Decides, at the end of a turn, whether to hold the output back one more turn: a read
    /// completed and more input is already buffered, so the application is about to reply
    /// to the next message too and both replies can leave in one write. Bounded by the
    /// high-water mark and by `MAX_HOLDS` turns in a row.
    pub(crate) fn hold_output(&mut self) -> bool {
        let hold = self.read_done
            && !self.rd_buf.is_empty()
            && !self.output_full()
            && self.holds < MAX_HOLDS;
        self.read_done = false;
        self.holds = if hold { self.holds + 1 } else { 0 };
        hold
    }

    /// Writes queued output now. Returns true when something was written.
    pub(crate) fn flush_now(&mut self, handle: &Handle) -> bool {
        self.flush_scheduled = false;
        if self.out.is_empty() {
            self.flush_blocked = false;
            return false;
        }
        let before = self.out.len();
        match self.out.flush(&mut self.transport) {
            Ok(done) => self.flush_blocked = !done,
            Err(e) => {
                self.flush_blocked = false;
                self.fail_all(handle, Error::from(e));
                return true;
            }
        }
        self.out.len() != before
    }

    // ---------------------------------------------------------------- reading

    /// Reads from the transport into `rd_buf`. `Ok(true)` when bytes arrived, `Ok(false)`
    /// when the transport would block; end of stream is `Err(Error::Eof)`.
    pub(crate) fn fill(&mut self) -> Result<bool, Error> {
        if !self.transport.readiness().is_readable() {
            return Ok(false);
        }
        let spare = self.rd_buf.spare(self.transport.handle().buffers());
        match self.transport.read(spare) {
            Ok(0) => Err(Error::Eof),
            Ok(n) => {
                self.rd_buf.commit(n);
                self.note_activity();
                Ok(true)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(false)
                } else {
                    Err(Error::from(e))
                }
            }
        }
    }

    fn consumer(&self) -> Option<Consumer> {
        if self.teardown.is_some() || self.status == Status::Handshake {
            return None;
        }
        if self.read_op.is_some() && !self.read_suspended {
            return Some(Consumer::Read);
        }
        if self.close_owns_reads() {
            return Some(Consumer::CloseDrain);
        }
        None
    }

    /// A close whose frame was sent reads the peer's frames (a deferred one does not yet).
    pub(crate) fn close_owns_reads(&self) -> bool {
        self.close_op
            .as_ref()
            .is_some_and(|op| op.deferred.is_none())
    }

    /// Parses and delivers frames until the consumer's operation ends or input runs out.
    fn advance_input(&mut self, handle: &Handle) -> bool {
        let mut progressed = false;
        loop {
            let Some(consumer) = self.consumer() else {
                return progressed;
            };
            match self.step(handle, consumer) {
                Step::Progress => progressed = true,
                Step::Finished => return true,
                Step::Blocked => return progressed,
                Step::NeedInput => match self.fill() {
                    Ok(true) => progressed = true,
                    Ok(false) => return progressed,
                    Err(e) => {
                        self.on_read_error(handle, consumer, e);
                        return true;
                    }
                },
            }
        }
    }

    /// The transport ended or failed while a frame consumer needed input.
    pub(crate) fn on_read_error(&mut self, handle: &Handle, consumer: Consumer, e: Error) {
        match consumer {
            Consumer::Read => {
                if let Some(op) = self.read_op.take() {
                    let err = self.deliver(e);
                    self.status = Status::Failed;
                    handle.complete_io(op.handler, Err(err), op.n);
                }
            }
            Consumer::CloseDrain => {
                if let Some(h) = self.take_close_handler() {
                    let err = self.deliver(e);
                    self.status = Status::Failed;
                    handle.complete_wait(h, Err(err));
                    self.finish_suspended_read(handle);
                }
            }
        }
    }

    fn finish_suspended_read(&mut self, handle: &Handle) {
        if self.read_suspended {
            self.read_suspended = false;
            if let Some(op) = self.read_op.take() {
                handle.complete_io(op.handler, Err(Error::OperationAborted), op.n);
            }
        }
    }

    #[inline]
    pub(crate) fn complete_read(&mut self, handle: &Handle, result: Result<(), Error>) {
        self.read_done = result.is_ok();
        if let Some(op) = self.read_op.take() {
            handle.complete_io(op.handler, result, op.n);
        }
    }

    /// One parsing step for `consumer`.
    fn step(&mut self, handle: &Handle, consumer: Consumer) -> Step {
        if self.rd_frame.is_some() && self.inflating(consumer) {
            return self.step_inflate(handle, consumer);
        }
        if self.rd_remain > 0 {
            return self.step_payload(handle, consumer);
        }
        if consumer == Consumer::Read && self.close_owns_reads() {
            // A close owns the read side once the reader waits for a header (Beast's
            // hand-over): the read ends `OperationAborted` after the close completes.
            self.read_suspended = true;
            return Step::Progress;
        }
        if let Some((header, _)) = self.pending_control.as_deref() {
            if self.control_must_wait(consumer, header.opcode) {
                return Step::Blocked;
            }
        }
        let (header, header_len) = match self.pending_control.take() {
            Some(pending) => *pending,
            None => match self.reader.decode(self.rd_buf.data()) {
                Ok(Some(found)) => found,
                Ok(None) => return Step::NeedInput,
                Err(e) => {
                    self.fail_protocol(consumer, e);
                    return Step::Finished;
                }
            },
        };
        if header.opcode.is_control() {
            let total = header_len + header.len as usize;
            if self.control_must_wait(consumer, header.opcode) {
                self.pending_control = Some(Box::new((header, header_len)));
                return Step::Blocked;
            }
            if self.rd_buf.len() < total {
                self.pending_control = Some(Box::new((header, header_len)));
                return Step::NeedInput;
            }
            let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
            let n = header.len as usize;
            payload[..n].copy_from_slice(&self.rd_buf.data()[header_len..total]);
            self.rd_buf.advance(total);
            if let Some(key) = header.mask {
                apply_mask(&mut payload[..n], key, 0);
            }
            return self.on_control(handle, consumer, header.opcode, &payload[..n]);
        }
        if let Some(step) = self.deliver_whole_message(handle, consumer, &header, header_len) {
            return step;
        }
        self.rd_buf.advance(header_len);
        if header.opcode != Opcode::Continuation {
            self.rd_done = false;
            self.rd_text = header.opcode == Opcode::Text;
            self.utf8.reset();
        }
        self.rd_remain = header.len;
        self.rd_phase = 0;
        self.rd_frame = Some(header);
        self.pmd_frame_start(&header);
        if header.len == 0 && !self.inflating(consumer) {
            return self.end_of_frame(handle, consumer);
        }
        Step::Progress
    }

    /// Delivers (or discards) payload bytes of the current data frame.
    fn step_payload(&mut self, handle: &Handle, consumer: Consumer) -> Step {
        let avail = self.rd_buf.len().min(self.rd_remain as usize);
        if avail == 0 {
            return self
                .read_payload_direct(handle, consumer)
                .unwrap_or(Step::NeedInput);
        }
        let Some(frame) = self.rd_frame else {
            return Step::NeedInput;
        };
        if consumer == Consumer::CloseDrain {
            self.rd_buf.advance(avail);
            self.rd_remain -= avail as u64;
            if self.rd_remain == 0 {
                return self.end_of_frame(handle, consumer);
            }
            return Step::Progress;
        }
        let Some(op) = self.read_op.as_mut() else {
            return Step::NeedInput;
        };
        let n = avail.min(op.limit - op.n);
        if n == 0 {
            self.complete_read(handle, Ok(()));
            return Step::Finished;
        }
        // Unmask while copying into the caller's buffer: one pass over the payload.
        let src = &self.rd_buf.data()[..n];
        let appended = match frame.mask {
            Some(key) => {
                let phase = self.rd_phase;
                // SAFETY: `mask_copy` writes every byte of the slice it is given, and the
                // closure reports exactly that many.
                let copied = unsafe {
                    op.buffer.append_uninit(n, |dst: &mut [MaybeUninit<u8>]| {
                        self.rd_phase = mask_copy(dst, src, key, phase);
                        Ok(n)
                    })
                };
                copied.map(|_| ())
            }
            None => op.buffer.extend_from_slice(src),
        };
        if let Err(e) = appended {
            // Beast: the dynamic buffer overflowed; the stream is failed, no close frame.
            let err = self.deliver(e);
            self.status = Status::Failed;
            self.complete_read(handle, Err(err));
            return Step::Finished;
        }
        if self.rd_text {
            let checked = self.utf8.feed(&op.buffer.last_mut(n));
            if let Err(e) = checked {
                op.buffer.drop_last(n);
                self.fail_protocol(consumer, e);
                return Step::Finished;
            }
        }
        self.rd_buf.advance(n);
        self.payload_delivered(handle, consumer, n)
    }

    /// `n` payload bytes of the current frame were appended to the read operation's buffer.
    pub(crate) fn payload_delivered(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
        n: usize,
    ) -> Step {
        if let Some(op) = self.read_op.as_mut() {
            op.n += n;
        }
        self.rd_remain -= n as u64;
        if self.rd_remain == 0 {
            return self.end_of_frame(handle, consumer);
        }
        if !self.read_op.as_ref().is_some_and(|op| op.whole) {
            self.complete_read(handle, Ok(()));
            return Step::Finished;
        }
        Step::Progress
    }

    /// The current data frame's payload is all in.
    pub(crate) fn end_of_frame(&mut self, handle: &Handle, consumer: Consumer) -> Step {
        let Some(frame) = self.rd_frame.take() else {
            return Step::Progress;
        };
        if consumer == Consumer::CloseDrain {
            return Step::Progress;
        }
        if frame.fin {
            if self.rd_text {
                if let Err(e) = self.utf8.finish() {
                    self.fail_protocol(consumer, e);
                    return Step::Finished;
                }
            }
            self.rd_done = true;
            self.complete_read(handle, Ok(()));
            return Step::Finished;
        }
        let some = self
            .read_op
            .as_ref()
            .is_some_and(|op| !op.whole && op.n > 0);
        if some {
            self.complete_read(handle, Ok(()));
            return Step::Finished;
        }
        Step::Progress
    }

    /// Handles a received control frame.
    fn on_control(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
        opcode: Opcode,
        payload: &[u8],
    ) -> Step {
        let draining = consumer == Consumer::CloseDrain;
        match opcode {
            Opcode::Ping => {
                if !draining && self.status == Status::Open {
                    self.arm_idle();
                    self.notify(handle, FrameType::Ping, payload);
                    self.emit_control(Opcode::Pong, payload);
                }
                Step::Progress
            }
            Opcode::Pong => {
                if !draining && !self.wr_close {
                    self.notify(handle, FrameType::Pong, payload);
                }
                Step::Progress
            }
            _ => {
                let reason = match CloseReason::parse(payload) {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail_protocol(consumer, e);
                        return Step::Finished;
                    }
                };
                self.close_reason = Some(Box::new(reason));
                if draining {
                    self.start_teardown(AfterTeardown::Close(None));
                    return Step::Finished;
                }
                self.notify(handle, FrameType::Close, reason.reason().as_bytes());
                if !self.wr_close {
                    let code = if reason.code == CloseCode::NONE {
                        CloseCode::NORMAL
                    } else {
                        reason.code
                    };
                    self.emit_close(&CloseReason::new(code));
                }
                self.status = Status::Closing;
                self.start_teardown(AfterTeardown::ReadClosed);
                Step::Finished
            }
        }
    }

    /// Queues the control callback, if any, from the run loop.
    fn notify(&self, handle: &Handle, kind: FrameType, payload: &[u8]) {
        if let Some(observer) = self.control.clone() {
            let mut copy = [0u8; MAX_CONTROL_PAYLOAD];
            let n = payload.len().min(MAX_CONTROL_PAYLOAD);
            copy[..n].copy_from_slice(&payload[..n]);
            observer.queued.set(observer.queued.get() + 1);
            handle.post(move || {
                observer.queued.set(observer.queued.get() - 1);
                (observer.callback.borrow_mut())(kind, &copy[..n])
            });
        }
    }

    /// True when the control frame `opcode` must wait before it is handled (Beast's read
    /// waits for its pong to be written): its reply would go to an output holding twice
    /// its high-water mark, or the control callback has `CONTROL_CALLS_QUEUED_MAX` calls
    /// queued. Writes stop at the mark itself, so a write that keeps the output there
    /// never holds a reply back. A closing drain neither replies nor calls back, so it
    /// never waits.
    fn control_must_wait(&self, consumer: Consumer, opcode: Opcode) -> bool {
        consumer == Consumer::Read
            && (self.control_calls_full()
                || (opcode != Opcode::Pong
                    && self.out.len() >= self.opts.high_water().saturating_mul(2)))
    }

    /// True when the control callback has `CONTROL_CALLS_QUEUED_MAX` calls queued.
    fn control_calls_full(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|observer| observer.queued.get() >= CONTROL_CALLS_QUEUED_MAX)
    }

    /// True when parsing may have stopped for the control callback's queued calls to run:
    /// the engine must run again after them, since no readiness event will come for bytes
    /// already read or left unread.
    fn awaits_control_calls(&self) -> bool {
        self.control_calls_full() && self.consumer() == Some(Consumer::Read)
    }

    /// A protocol violation: send the close code it calls for (unless a close frame was
    /// sent already), tear down, and complete with the error.
    pub(crate) fn fail_protocol(&mut self, consumer: Consumer, e: Error) {
        if !self.wr_close {
            if let Some(code) = e.close_code() {
                self.emit_close(&CloseReason::new(CloseCode(code)));
            }
        }
        self.status = Status::Closing;
        let then = match consumer {
            Consumer::Read => AfterTeardown::ReadFailed(e),
            Consumer::CloseDrain => AfterTeardown::Close(Some(e)),
        };
        self.start_teardown(then);
    }

    // ---------------------------------------------------------------- closing

    /// Starts the closing handshake: queues our close frame.
    pub(crate) fn start_close(&mut self, reason: &CloseReason) {
        self.emit_close(reason);
        self.status = Status::Closing;
    }

    /// True once a close was started or a close frame sent: writes, pings and pongs started
    /// now are aborted.
    pub(crate) fn close_started(&self) -> bool {
        self.wr_close
            || self
                .close_op
                .as_ref()
                .is_some_and(|op| op.deferred.is_some())
    }

    /// Takes the outstanding close's handler.
    fn take_close_handler(&mut self) -> Option<WaitHandler> {
        self.close_op.take().map(|op| op.handler)
    }

    /// Sends the close frame of a close that waited for a parked write, once the write is
    /// done. Returns true when it did.
    fn start_deferred_close(&mut self) -> bool {
        if self.write_op.is_some() || self.status != Status::Open {
            return false;
        }
        match self.close_op.as_mut().and_then(|op| op.deferred.take()) {
            Some(reason) => {
                self.start_close(&reason);
                true
            }
            None => false,
        }
    }

    fn start_teardown(&mut self, then: AfterTeardown) {
        self.teardown = Some(Box::new(Teardown {
            phase: TeardownPhase::Flush,
            then,
            shutdown_error: None,
        }));
    }

    /// Tears the transport down (RFC 6455 §7.1.1, Beast's order): a server shuts down its
    /// sending side first and then reads until end of stream; a client reads until end of
    /// stream first. Then the transport is closed.
    fn advance_teardown(&mut self, handle: &Handle) -> bool {
        let Some(phase) = self.teardown.as_ref().map(|t| t.phase) else {
            return false;
        };
        if phase == TeardownPhase::Flush {
            if !self.out.is_empty() && (!self.flush_now(handle) || !self.out.is_empty()) {
                return false;
            }
            if self.teardown.is_none() {
                return true; // the flush failed the connection
            }
            let shutdown_error = match self.role {
                Role::Server => self.shutdown_sending(),
                Role::Client => None,
            };
            if let Some(t) = self.teardown.as_mut() {
                t.phase = TeardownPhase::Drain;
                t.shutdown_error = shutdown_error;
            }
        }
        let outcome = loop {
            self.rd_buf.clear();
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => return phase == TeardownPhase::Flush,
                Err(Error::Eof) => break None,
                Err(e) => break Some(e),
            }
        };
        let outcome = match self.role {
            Role::Client => outcome.or_else(|| self.shutdown_sending()),
            Role::Server => outcome,
        };
        self.transport.close();
        self.rd_buf.clear();
        self.rd_buf.give_back(self.transport.handle().buffers());
        let Some(teardown) = self.teardown.take() else {
            return true;
        };
        // The first failure in time wins: for a server, its shutdown came first.
        let outcome = teardown.shutdown_error.or(outcome);
        self.finish_teardown(handle, teardown.then, outcome);
        true
    }

    /// Shuts down the transport's sending side (for TLS: close_notify, then the TCP
    /// shutdown). A failure is reported, except `NotConnected`: a TCP peer that already
    /// reset the connection leaves nothing to shut down, and the drain reports that.
    fn shutdown_sending(&mut self) -> Option<Error> {
        match self.transport.shutdown(Shutdown::Write) {
            Ok(()) => None,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Error::from(e)),
        }
    }

    fn finish_teardown(&mut self, handle: &Handle, then: AfterTeardown, outcome: Option<Error>) {
        match then {
            AfterTeardown::ReadClosed => {
                let result = match outcome {
                    None => {
                        self.status = Status::Closed;
                        Error::Closed
                    }
                    Some(e) => {
                        self.status = Status::Failed;
                        e
                    }
                };
                let err = self.deliver(result);
                self.complete_read(handle, Err(err));
            }
            AfterTeardown::ReadFailed(e) => {
                self.status = Status::Failed;
                let err = self.deliver(e);
                self.complete_read(handle, Err(err));
            }
            AfterTeardown::Close(error) => {
                let error = error.or(outcome);
                self.status = if error.is_some() {
                    Status::Failed
                } else {
                    Status::Closed
                };
                let result = match error {
                    None => Ok(()),
                    Some(e) => Err(self.deliver(e)),
                };
                if let Some(h) = self.take_close_handler() {
                    handle.complete_wait(h, result);
                }
                self.finish_suspended_read(handle);
            }
        }
        // Operations started while the connection was closing end with it, and a close
        // still waiting for a parked write finds the stream closed (Beast's `check_stop_now`).
        if let Some(h) = self.take_close_handler() {
            handle.complete_wait(h, Err(Error::OperationAborted));
        }
        if let Some(op) = self.read_op.take() {
            handle.complete_io(op.handler, Err(Error::OperationAborted), op.n);
        }
        self.read_suspended = false;
        if let Some(op) = self.write_op.take() {
            op.complete(handle, Err(Error::OperationAborted));
        }
    }

    // ---------------------------------------------------------------- the engine

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
