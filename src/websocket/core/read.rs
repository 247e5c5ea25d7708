//! Reading: input parsed into frames for whichever operation owns the read side (a read,
//! or a close draining the peer's frames), and data payloads delivered to the read.

use std::io;
use std::mem::MaybeUninit;

use super::{Core, Status};
use crate::net::{FlatBuffer, Handle, IoHandler, Transport};
use crate::proto::frame::{Opcode, MAX_CONTROL_PAYLOAD};
use crate::proto::mask::{apply_mask, mask_copy};
use crate::Error;

/// An outstanding read: the caller's buffer the payload goes to, and how much it takes.
pub(crate) struct ReadOp {
    pub(crate) buffer: FlatBuffer,
    /// Most payload bytes to deliver (read_some); `usize::MAX` for no limit.
    pub(crate) limit: usize,
    /// Read a whole message (async_read) rather than some of it.
    pub(crate) whole: bool,
    pub(crate) handler: IoHandler,
    pub(crate) n: usize,
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

impl<T: Transport> Core<T> {
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

    pub(super) fn consumer(&self) -> Option<Consumer> {
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
    pub(super) fn advance_input(&mut self, handle: &Handle) -> bool {
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

    pub(super) fn finish_suspended_read(&mut self, handle: &Handle) {
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
    pub(super) fn step(&mut self, handle: &Handle, consumer: Consumer) -> Step {
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
}
