//! permessage-deflate in the stream's engine: the per-connection compression state, the
//! inflating read step and the compressing write algorithm (Beast's fifth write algorithm).
//!
//! The engine in `core/` calls in at three points: when a data frame starts
//! ([`Core::pmd_frame_start`]), when a frame of a compressed message has payload to deliver
//! ([`Core::step_inflate`]), and when a write may start or continue a compressed message
//! ([`Core::pmd_write`]). The zlib state itself is allocated by the codec when the first
//! compressed message flows.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use super::core::{Consumer, Core, Status, Step, WriteOp};
use crate::net::{Handle, InternalTimer, Transport};
use crate::proto::deflate::{Deflater, Inflater, PermessageDeflate, PmdParams, MIN_DEFLATE_CHUNK};
use crate::proto::frame::{FrameHeader, Opcode, MAX_HEADER_LEN};
use crate::proto::mask::{apply_mask, mask_key};
use crate::{Error, Role};

/// Most bytes inflated into the read buffer per step of a whole-message read.
const INFLATE_STEP: usize = 64 * 1024;

/// Fewest bytes of room a step inflates into. A step's room is twice the compressed bytes
/// at hand or what the read has inflated so far, whichever is more, within these bounds: a
/// small message takes little room in the reader's buffer, a large one few steps.
const INFLATE_MIN_STEP: usize = 2 * 1024;

/// The tag of a stream's timer for freeing idle zlib states (its timeout timer is 0).
pub(crate) const IDLE_RELEASE_TIMER: u8 = 1;

/// The permessage-deflate state of a stream.
pub(crate) struct PmdState {
    /// The option (Beast's `permessage_deflate`), used by the next handshake, and its
    /// timer; `None` until one is set (the default option, compression off). Boxed, so that
    /// a stream never given the option carries a pointer.
    config: Option<Box<PmdConfig>>,
    /// Beast's `compress()` switch: compress outgoing messages when negotiated.
    pub(crate) compress: bool,
    /// The codec, present while permessage-deflate is in force (boxed, so that a stream
    /// without compression carries only a pointer).
    codec: Option<Box<PmdCodec>>,

    // write side
    /// The message being written is compressed (latched at its start).
    wr_compress: bool,
    /// A compressed message has started (possibly with no frame out yet: latency).
    wr_in_msg: bool,
    /// The next frame is the message's first (opcode and RSV1).
    wr_first: bool,

    // read side
    /// The message being read is compressed (RSV1 on its first frame).
    rd_compressed: bool,
    /// Bytes at the start of the read buffer already unmasked (current frame).
    rd_clear: usize,
}

/// A stream's permessage-deflate option.
struct PmdConfig {
    opts: PermessageDeflate,
    /// Freeing idle zlib states, once the option has asked for it.
    release: Option<IdleRelease>,
}

/// The timer freeing a connection's idle zlib states (`PermessageDeflate::idle_release`).
struct IdleRelease {
    timer: InternalTimer,
    /// The option's period in force on this connection (taken at its handshake).
    after: Option<Duration>,
    /// The timer is armed.
    armed: bool,
    /// When the last compressed message (either way) ended. The timer, armed when the first
    /// one ended, moves itself to `last_message + after` when it fires too early, so a
    /// message's end only notes the time.
    last_message: Option<Instant>,
}

impl Default for PmdState {
    fn default() -> Self {
        PmdState {
            config: None,
            compress: true,
            codec: None,
            wr_compress: false,
            wr_in_msg: false,
            wr_first: false,
            rd_compressed: false,
            rd_clear: 0,
        }
    }
}

/// The compressor and decompressor of a connection (their zlib state is allocated when the
/// first compressed message flows).
struct PmdCodec {
    deflater: Deflater,
    inflater: Inflater,
}

thread_local! {
    /// One frame's compressed payload on its way to the output, shared by the thread's
    /// streams (a frame is compressed and copied out within one call): idle streams hold
    /// no frame buffer.
    static FRAME_PAYLOAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl PmdState {
    /// True when a new message of `len` bytes would be compressed.
    pub(crate) fn would_compress(&self, len: usize) -> bool {
        self.codec.is_some() && self.compress && len >= self.msg_size_threshold()
    }

    /// The option in force for the next handshake.
    pub(crate) fn opts(&self) -> PermessageDeflate {
        self.config
            .as_ref()
            .map_or_else(PermessageDeflate::default, |c| c.opts)
    }

    /// Sets the option (already validated); `timer` makes the idle-release timer (reaching
    /// the stream with [`IDLE_RELEASE_TIMER`]) when the option first asks for one.
    pub(crate) fn set_opts(
        &mut self,
        opts: PermessageDeflate,
        timer: impl FnOnce() -> InternalTimer,
    ) {
        if self.config.is_none() && opts == PermessageDeflate::default() {
            return;
        }
        let config = self.config.get_or_insert_with(|| {
            Box::new(PmdConfig {
                opts,
                release: None,
            })
        });
        config.opts = opts;
        if opts.idle_release.is_some() && config.release.is_none() {
            config.release = Some(IdleRelease {
                timer: timer(),
                after: None,
                armed: false,
                last_message: None,
            });
        }
    }

    fn msg_size_threshold(&self) -> usize {
        self.config
            .as_ref()
            .map_or(0, |c| c.opts.msg_size_threshold)
    }

    fn release_mut(&mut self) -> Option<&mut IdleRelease> {
        self.config.as_mut().and_then(|c| c.release.as_mut())
    }

    /// True while permessage-deflate is in force on the connection.
    pub(crate) fn is_active(&self) -> bool {
        self.codec.is_some()
    }

    /// True while a compressed message is being written.
    pub(crate) fn writing_message(&self) -> bool {
        self.wr_in_msg
    }

    /// Whether the compressor and the decompressor hold zlib states.
    #[cfg(test)]
    pub(crate) fn zlib_states_held(&self) -> (bool, bool) {
        self.codec.as_ref().map_or((false, false), |c| {
            (c.deflater.is_allocated(), c.inflater.is_allocated())
        })
    }
}

impl<T: Transport> Core<T> {
    /// The handshake agreed on `params` (or on no compression): set the frame rules and the
    /// codec for this connection. Called after [`Core::open`].
    pub(crate) fn pmd_open(&mut self, role: Role, params: Option<PmdParams>) {
        let pmd = &mut self.pmd;
        let opts = pmd.opts();
        let releases = match pmd.release_mut() {
            Some(release) => {
                release.after = opts.idle_release;
                release.last_message = None;
                opts.idle_release.is_some()
            }
            None => false,
        };
        pmd.codec = params.map(|p| {
            let mut deflater = Deflater::for_role(role, &p, &opts);
            let mut inflater = Inflater::for_role(role, &p);
            if releases {
                deflater = deflater.with_idle_release();
                inflater = inflater.with_idle_release();
            }
            Box::new(PmdCodec { deflater, inflater })
        });
        pmd.wr_compress = false;
        pmd.wr_in_msg = false;
        pmd.wr_first = false;
        pmd.rd_compressed = false;
        pmd.rd_clear = 0;
        let mut rules = *self.reader.rules();
        rules.pmd_active = params.is_some();
        self.reader.set_rules(rules);
    }

    // ---------------------------------------------------------------- reading

    /// A data frame starts: a text or binary frame decides whether its message is
    /// compressed.
    pub(crate) fn pmd_frame_start(&mut self, header: &FrameHeader) {
        if header.opcode != Opcode::Continuation {
            self.pmd.rd_compressed = header.rsv1 && self.pmd.codec.is_some();
        }
        self.pmd.rd_clear = 0;
    }

    /// True when the read operation's frames go through the inflater.
    pub(crate) fn inflating(&self, consumer: Consumer) -> bool {
        consumer == Consumer::Read && self.pmd.rd_compressed
    }

    /// Inflates payload of the current frame of a compressed message into the read
    /// operation's buffer, at most the room its limit leaves. At the end of the message's
    /// last frame the `00 00 ff ff` tail is inflated and the output drained.
    pub(crate) fn step_inflate(&mut self, handle: &Handle, consumer: Consumer) -> Step {
        let Some(frame) = self.rd_frame else {
            return Step::Progress;
        };
        let Some(op) = self.read_op.as_ref() else {
            return Step::NeedInput;
        };
        let room = op.limit - op.n;
        if room == 0 {
            self.complete_read(handle, Ok(()));
            return Step::Finished;
        }
        let avail = self.rd_buf.len().min(self.rd_remain as usize);
        let frame_end = avail as u64 == self.rd_remain;
        let last = frame.fin && frame_end;
        if avail == 0 && !frame_end {
            return Step::NeedInput;
        }
        if let Some(key) = frame.mask {
            let clear = self.pmd.rd_clear;
            if clear < avail {
                self.rd_phase = apply_mask(
                    &mut self.rd_buf.data_mut()[clear..avail],
                    key,
                    self.rd_phase,
                );
                self.pmd.rd_clear = avail;
            }
        }
        let Some(inflater) = self.pmd.codec.as_mut().map(|c| &mut c.inflater) else {
            return Step::NeedInput;
        };
        let Some(op) = self.read_op.as_mut() else {
            return Step::NeedInput;
        };
        let space = op.buffer.max_size() - op.buffer.size();
        let step = (2 * avail).max(op.n).clamp(INFLATE_MIN_STEP, INFLATE_STEP);
        let max_out = room.min(space).min(step);
        let limit = match self.opts.read_message_max {
            0 => usize::MAX,
            max => usize::try_from(max).unwrap_or(usize::MAX),
        };
        let result = match op.buffer.prepare(max_out.max(1)) {
            Err(e) => Err(e),
            Ok(mut area) => {
                inflater.inflate_into(&self.rd_buf.data()[..avail], last, &mut area, limit)
            }
        };
        let progress = match result {
            Ok(p) => p,
            Err(Error::BufferOverflow) => {
                // Beast: the dynamic buffer overflowed; the stream is failed, no close frame.
                let err = self.deliver(Error::BufferOverflow);
                self.status = Status::Failed;
                self.complete_read(handle, Err(err));
                return Step::Finished;
            }
            Err(e) => {
                // Corrupt data (1007, where Beast sends no close frame) or a message past
                // `read_message_max` once inflated (1009).
                self.fail_protocol(consumer, e);
                return Step::Finished;
            }
        };
        op.buffer.commit(progress.written);
        if self.rd_text && progress.written > 0 {
            let data = op.buffer.data();
            let fresh = &data[data.len() - progress.written..];
            if let Err(e) = self.utf8.feed(fresh) {
                drop(data);
                // As Beast, the bytes of the failed step are not delivered: the buffer holds
                // what the read reports.
                op.buffer.drop_last(progress.written);
                self.fail_protocol(consumer, e);
                return Step::Finished;
            }
        }
        op.n += progress.written;
        let whole = op.whole;
        let delivered = op.n > 0;
        let consumed = progress.consumed;
        self.rd_buf.advance(consumed);
        self.rd_remain -= consumed as u64;
        self.pmd.rd_clear -= consumed.min(self.pmd.rd_clear);
        if last && progress.done {
            self.pmd_message_ended();
        }
        if (last && progress.done) || (!frame.fin && self.rd_remain == 0) {
            return self.end_of_frame(handle, consumer);
        }
        if !whole && delivered {
            self.complete_read(handle, Ok(()));
            return Step::Finished;
        }
        if consumed == 0 && progress.written == 0 {
            return Step::NeedInput;
        }
        Step::Progress
    }

    // ---------------------------------------------------------------- idle release

    /// A compressed message ended, either way: the idle period of the zlib states starts
    /// again (when the option frees idle states).
    fn pmd_message_ended(&mut self) {
        let Some(release) = self.pmd.release_mut() else {
            return;
        };
        let Some(after) = release.after else {
            return;
        };
        let now = release.timer.now();
        release.last_message = Some(now);
        if !release.armed {
            release.timer.arm(Some(now + after));
            release.armed = true;
        }
    }

    /// The idle-release timer fired: free the states of both directions if no compressed
    /// message ended for `idle_release`, else wait for the rest of it. A direction in the
    /// middle of a message keeps its state; the message's end arms the timer again.
    pub(crate) fn pmd_release_timer_expired(&mut self) {
        let Some(release) = self.pmd.release_mut() else {
            return;
        };
        release.armed = false;
        let (Some(after), Some(last)) = (release.after, release.last_message) else {
            return;
        };
        let due = last + after;
        if due > release.timer.now() {
            release.timer.arm(Some(due));
            release.armed = true;
            return;
        }
        if let Some(codec) = self.pmd.codec.as_mut() {
            codec.deflater.release_idle();
            codec.inflater.release_idle();
        }
    }

    // ---------------------------------------------------------------- writing

    /// Decides, at the start of a message, whether it is compressed (Beast: negotiated,
    /// `compress()`, and the first write at least `msg_size_threshold` bytes), and says
    /// whether `op` goes through the compressor.
    pub(crate) fn pmd_write(&mut self, op: &mut WriteOp) -> bool {
        if !self.wr_cont && !self.pmd.wr_in_msg && !op.framing.emitted {
            self.pmd.wr_compress = self.pmd.codec.is_some() && op.start.compress;
        }
        self.pmd.wr_compress
    }

    /// Compresses the write's data into frames of at most `write_buffer_bytes` (latched at
    /// the message's start; at least [`MIN_DEFLATE_CHUNK`]) compressed bytes, one frame per
    /// chunk, whatever `auto_fragment` says (as Beast). A non-final write may emit nothing
    /// (compression latency); it completes once its data is taken. Returns true on progress.
    pub(crate) fn advance_write_deflate(&mut self, handle: &Handle, mut op: Box<WriteOp>) -> bool {
        op.framing.emitted = true; // started: the compression decision holds for the whole op
        if !self.pmd.wr_in_msg {
            self.pmd.wr_in_msg = true;
            self.pmd.wr_first = true;
            self.begin_message(op.start);
        }
        let chunk = self.wr_frame_bytes.max(MIN_DEFLATE_CHUNK);
        let mut progressed = false;
        // Empty if a caller up the stack holds it (then this call allocates its own).
        let mut buf = FRAME_PAYLOAD
            .try_with(|b| std::mem::take(&mut *b.borrow_mut()))
            .unwrap_or_default();
        let outcome = loop {
            let remaining = op.data().remaining();
            if !op.fin && remaining == 0 {
                break Ok(true);
            }
            if self.output_full() {
                break Ok(false);
            }
            let Some(deflater) = self.pmd.codec.as_mut().map(|c| &mut c.deflater) else {
                break Err(Error::OperationAborted);
            };
            let fin = op.fin;
            let input = op.data().chunk();
            let piece_last = fin && input.len() == remaining;
            buf.clear();
            let p = match deflater.compress(input, piece_last, &mut buf, chunk) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            op.data().advance(p.consumed);
            op.framing.taken += p.consumed;
            progressed = true;
            let end = piece_last && p.done;
            if p.written > 0 || end {
                let opcode = if self.pmd.wr_first {
                    self.wr_opcode
                } else {
                    Opcode::Continuation
                };
                self.emit_deflated(end, opcode, self.pmd.wr_first, &mut buf);
                self.pmd.wr_first = false;
                self.wr_cont = !end;
            }
            if end {
                self.pmd.wr_in_msg = false;
                self.wr_cont = false;
                self.pmd_message_ended();
                break Ok(true);
            }
        };
        let _ = FRAME_PAYLOAD.try_with(move |b| *b.borrow_mut() = buf);
        match outcome {
            Ok(true) => {
                op.complete(handle, Ok(()));
                true
            }
            Ok(false) => {
                self.write_op = Some(op);
                progressed
            }
            Err(e) => {
                self.status = Status::Failed;
                let e = self.deliver(e);
                op.complete(handle, Err(e));
                true
            }
        }
    }

    /// Appends one frame of compressed payload (masked in place for a client).
    fn emit_deflated(&mut self, fin: bool, opcode: Opcode, rsv1: bool, payload: &mut [u8]) {
        let mask = match self.role {
            Role::Client => Some(mask_key(self.opts.secure_prng)),
            Role::Server => None,
        };
        let mut header = FrameHeader::new(fin, opcode, payload.len() as u64, mask);
        header.rsv1 = rsv1;
        self.out.take_stage(self.transport.handle().buffers());
        let mut raw = [0u8; MAX_HEADER_LEN];
        let n = header.encode(&mut raw);
        self.out.push_header(&raw, n, payload.len());
        if let Some(key) = mask {
            apply_mask(payload, key, 0);
        }
        self.out.push_copy(payload);
    }
}

#[cfg(test)]
mod idle_release_tests;
