//! A message that arrived whole in one frame, delivered in one step.
//!
//! Most messages are a single frame that arrives in one read. For such a frame the
//! general path of the read engine (start the frame, deliver its payload, end the frame and
//! the message) would take three steps and keep the frame's state in between; this does the
//! same work in one step with the same outcome, errors included.

use super::core::{Consumer, Core, Status, Step};
use super::read_buffer::ReadBuffer;
use crate::net::{Fill, FlatBuffer, Handle, Transport};
use crate::proto::frame::{FrameHeader, Opcode};
use crate::proto::mask::mask_copy;
use crate::proto::utf8;
use crate::Error;
use std::io;
use std::mem::MaybeUninit;

impl<T: Transport> Core<T> {
    /// Completes the read in progress with the next message when, at a frame boundary, the
    /// read buffer starts with a whole one-frame message the read takes all of (read from
    /// the transport first when nothing is buffered): the general path (find the consumer,
    /// decode, then [`deliver_whole_message`]) in one step. False, with nothing consumed
    /// but the bytes read, when the general path must run.
    ///
    /// [`deliver_whole_message`]: Core::deliver_whole_message
    #[inline]
    pub(crate) fn read_buffered_message(&mut self, handle: &Handle) -> bool {
        if self.rd_remain > 0
            || self.rd_frame.is_some()
            || self.pending_control.is_some()
            || self.read_suspended
            || self.close_owns_reads()
        {
            return false;
        }
        let Some(room) = self.read_op.as_ref().map(|op| op.limit - op.n) else {
            return false;
        };
        if self.rd_buf.is_empty() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return false,
                Err(e) => {
                    self.on_read_error(handle, Consumer::Read, e);
                    return true;
                }
            }
        }
        let Some((header, header_len)) = self.reader.decode_whole_message(self.rd_buf.data(), room)
        else {
            return false;
        };
        self.deliver_message(handle, Consumer::Read, &header, header_len);
        true
    }

    /// Delivers the data frame `header` (its `header_len` bytes still at the front of the
    /// read buffer) to the read operation when the frame is a whole uncompressed message
    /// with all its payload buffered, and the read takes all of it. `None` (nothing
    /// consumed) when the general path must handle the frame.
    pub(crate) fn deliver_whole_message(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
        header: &FrameHeader,
        header_len: usize,
    ) -> Option<Step> {
        let len = usize::try_from(header.len).ok()?;
        if consumer != Consumer::Read
            || !header.fin
            || header.rsv1
            || !matches!(header.opcode, Opcode::Text | Opcode::Binary)
            || self.rd_buf.len() - header_len < len
        {
            return None;
        }
        let op = self.read_op.as_ref()?;
        if op.limit - op.n < len {
            return None;
        }
        Some(self.deliver_message(handle, consumer, header, header_len))
    }

    /// Delivers a whole message checked by [`deliver_whole_message`] to the read operation
    /// (which takes all of it): appends its payload, unmasked and validated, and completes
    /// the read, or fails it as the general path would.
    ///
    /// [`deliver_whole_message`]: Core::deliver_whole_message
    #[inline(always)]
    fn deliver_message(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
        header: &FrameHeader,
        header_len: usize,
    ) -> Step {
        // What the general path would set first too.
        self.rd_text = header.opcode == Opcode::Text;
        self.pmd_frame_start(header);
        let Some(op) = self.read_op.as_mut() else {
            return Step::Finished; // not reached: the callers checked that a read is in progress
        };
        match append_whole_message(
            &mut self.rd_buf,
            &op.buffer,
            header,
            header_len,
            self.rd_text,
        ) {
            Ok(len) => {
                op.n += len;
                self.rd_done = true;
                self.complete_read(handle, Ok(()));
            }
            Err(fault) => self.fail_whole_message(handle, consumer, fault),
        }
        Step::Finished
    }

    /// A read starting (with nothing else in progress) when the read buffer begins with a
    /// whole one-frame message it takes all of: the message is appended to `buffer` at once,
    /// before the read becomes an operation. `Some(Ok(n))`: the read is complete with `n`
    /// bytes, its handler is for the caller to post. `Some(Err(fault))`: the message broke
    /// a rule and is consumed; the caller stores the read and hands the fault to
    /// [`fail_whole_message`](Core::fail_whole_message). `None`: nothing was consumed, the
    /// read goes the general way. The same steps and outcomes as
    /// [`read_buffered_message`](Core::read_buffered_message), without the stored read.
    #[inline]
    pub(crate) fn read_message_at_start(
        &mut self,
        buffer: &FlatBuffer,
        limit: usize,
    ) -> Option<Result<usize, MessageFault>> {
        if self.rd_buf.is_empty()
            || !self.only_input_pending()
            || self.output_full()
            || self.rd_remain > 0
            || self.rd_frame.is_some()
            || self.pending_control.is_some()
            || self.read_suspended
            || self.close_op.is_some()
        {
            return None;
        }
        let (header, header_len) = self
            .reader
            .decode_whole_message(self.rd_buf.data(), limit)?;
        self.rd_text = header.opcode == Opcode::Text;
        self.pmd_frame_start(&header);
        let appended =
            append_whole_message(&mut self.rd_buf, buffer, &header, header_len, self.rd_text);
        if appended.is_ok() {
            self.rd_done = true;
            self.read_done = true;
            self.release_read_buffer(false);
        }
        Some(appended)
    }

    /// Fails the read in progress for a whole message that broke a rule, as the general
    /// path does: an overflowing buffer fails the stream (no close frame, Beast's rule), a
    /// bad UTF-8 payload fails the protocol (a close frame, then the read's error).
    pub(crate) fn fail_whole_message(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
        fault: MessageFault,
    ) {
        self.rd_done = false;
        match fault {
            MessageFault::Overflow(e) => {
                let err = self.deliver(e);
                self.status = Status::Failed;
                self.complete_read(handle, Err(err));
            }
            MessageFault::BadPayload(e) => self.fail_protocol(consumer, e),
        }
    }
}

/// Why a whole message was not delivered: see [`Core::fail_whole_message`].
pub(crate) enum MessageFault {
    /// The read's buffer could not take the payload.
    Overflow(Error),
    /// A text payload that is not UTF-8.
    BadPayload(Error),
}

/// Unmasks a payload into the room [`FlatBuffer::append_uninit`] reserved (the whole
/// slice), inlined into the read path.
struct UnmaskCopy<'a> {
    src: &'a [u8],
    key: [u8; 4],
}

impl Fill for UnmaskCopy<'_> {
    #[inline(always)]
    fn fill(self, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        mask_copy(dst, self.src, self.key, 0);
        Ok(self.src.len())
    }
}

/// Appends the payload of the whole message `header` (its `header_len` header bytes at the
/// front of `rd_buf`, its payload all buffered after them) to `buffer`, unmasked, and checks
/// a text payload. `Ok(len)` with the message consumed from `rd_buf`; on a fault nothing of
/// the payload stays in `buffer` and only the header is consumed.
#[inline(always)]
fn append_whole_message(
    rd_buf: &mut ReadBuffer,
    buffer: &FlatBuffer,
    header: &FrameHeader,
    header_len: usize,
    text: bool,
) -> Result<usize, MessageFault> {
    let len = header.len as usize;
    rd_buf.advance(header_len);
    let payload = &mut rd_buf.data_mut()[..len];
    let appended = match header.mask {
        // Unmasked while copied: one pass over the payload.
        Some(key) => {
            let src = &*payload;
            // SAFETY: `UnmaskCopy` initialises every byte of the slice it is given and
            // reports exactly that many.
            unsafe {
                buffer
                    .append_uninit(len, UnmaskCopy { src, key })
                    .map(|_| ())
            }
        }
        None => buffer.append(payload),
    };
    appended.map_err(MessageFault::Overflow)?;
    if text {
        let checked = utf8::validate(&buffer.last_mut(len));
        if let Err(e) = checked {
            buffer.drop_last(len);
            return Err(MessageFault::BadPayload(e));
        }
    }
    rd_buf.advance(len);
    Ok(len)
}
