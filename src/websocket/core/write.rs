//! Writing: frames emitted into the corked output, from a write as it starts or from a
//! write parked until the output has room, and control frames between whole frames.

use bytes::Buf;

use super::{Core, Status};
use crate::net::{Handle, Transport, WriteJob};
use crate::proto::close::CloseReason;
use crate::proto::frame::{FrameHeader, Opcode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use crate::proto::mask::{apply_mask, mask_key};
use crate::{Error, Role};

/// Unmasked payloads at least this long are queued without copying.
pub(crate) const ZERO_COPY_MIN: usize = 1024;

/// A write that could not be framed as it started: the rest of its buffers, framed as the
/// output makes room.
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

impl<T: Transport> Core<T> {
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
    pub(super) fn emit_close(&mut self, reason: &CloseReason) {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let n = reason.encode(&mut payload).unwrap_or(0);
        self.emit_control(Opcode::Close, &payload[..n]);
        self.wr_close = true;
    }

    /// Emits frames for the pending write until it is done or the output is full.
    pub(super) fn advance_write(&mut self, handle: &Handle) -> bool {
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
}
