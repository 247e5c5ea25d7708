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
    /// The settings of the message it begins, if it does, as they were when it started.
    pub(crate) start: MessageStart,
}

/// A message's settings as its first write starts (Beast's `begin_msg`): the message keeps
/// them to its end, whatever the options become while its writes wait.
#[derive(Clone, Copy)]
pub(crate) struct MessageStart {
    pub(crate) opcode: Opcode,
    pub(crate) auto_fragment: bool,
    /// `write_buffer_bytes`: the size of its frames, or of its compressed chunks.
    pub(crate) frame_bytes: usize,
    /// The message is compressed: permessage-deflate is in force, `compress()` was on and
    /// the first write carries at least `msg_size_threshold` bytes.
    pub(crate) compress: bool,
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
        let WriteOp {
            job,
            fin,
            framing,
            start,
        } = &mut *op;
        if self.emit_frames(*fin, job.data(), framing, *start) {
            op.complete(handle, Ok(()));
            return true;
        }
        let progressed = op.framing != before;
        self.write_op = Some(op);
        progressed
    }

    /// The settings a message begun now by a write of `len` bytes keeps (see
    /// [`MessageStart`]).
    pub(crate) fn message_start(&self, len: usize) -> MessageStart {
        MessageStart {
            opcode: self.opts.message_opcode(),
            auto_fragment: self.opts.auto_fragment,
            frame_bytes: self.opts.write_buffer_bytes(),
            compress: self.pmd.would_compress(len),
        }
    }

    /// Latches the settings of a message whose first frame is about to be emitted (Beast
    /// latches them at message start): its later frames keep them.
    #[inline(always)]
    pub(crate) fn begin_message(&mut self, start: MessageStart) {
        self.wr_opcode = start.opcode;
        self.wr_auto_fragment = start.auto_fragment;
        self.wr_frame_bytes = start.frame_bytes;
    }

    /// Emits frames of a write until all of `data` is framed (true) or the output is full
    /// (false), recording its progress in `framing`; a write that begins a message gives it
    /// the settings of `start`.
    fn emit_frames(
        &mut self,
        fin: bool,
        data: &mut dyn Buf,
        framing: &mut Framing,
        start: MessageStart,
    ) -> bool {
        loop {
            let remaining = data.remaining();
            if framing.emitted && remaining == 0 {
                return true;
            }
            if self.output_full() {
                return false;
            }
            if !self.wr_cont {
                self.begin_message(start);
            }
            let len = if self.wr_auto_fragment {
                remaining.min(self.wr_frame_bytes)
            } else {
                remaining
            };
            let last = len == remaining;
            if !last && len >= ZERO_COPY_MIN && self.role == Role::Server {
                self.emit_shared_frames(fin, data, framing);
                continue;
            }
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

    /// Emits frames of a fragmented write in the server role, frames long enough to be
    /// queued without a copy: as many as [`emit_frames`](Core::emit_frames) would emit one
    /// by one (each while the output is below its high-water mark; a last frame too short
    /// to be shared is left to it). Their payload is taken from `data` in one call (no copy
    /// when it is one `Bytes`), and each frame's chunk is cut from that, without a call
    /// through the caller's buffers per frame. The caller has latched the message's settings.
    fn emit_shared_frames(&mut self, fin: bool, data: &mut dyn Buf, framing: &mut Framing) {
        let size = self.wr_frame_bytes;
        let remaining = data.remaining();
        let high_water = self.opts.high_water();
        let mut queued = self.out.len();
        let mut take = 0;
        while take < remaining && queued < high_water {
            let len = (remaining - take).min(size);
            if len < ZERO_COPY_MIN {
                break;
            }
            take += len;
            queued +=
                len + FrameHeader::new(false, Opcode::Continuation, len as u64, None).encoded_len();
        }
        let mut payload = data.copy_to_bytes(take);
        let mut left = remaining;
        self.out.take_stage(self.transport.handle().buffers());
        while !payload.is_empty() {
            let chunk = if payload.len() > size {
                payload.split_to(size)
            } else {
                std::mem::take(&mut payload)
            };
            let len = chunk.len();
            left -= len;
            let frame_fin = fin && left == 0;
            let opcode = if self.wr_cont {
                Opcode::Continuation
            } else {
                self.wr_opcode
            };
            let mut raw = [0u8; MAX_HEADER_LEN];
            let n = FrameHeader::new(frame_fin, opcode, len as u64, None).encode(&mut raw);
            self.out.push_header(&raw, n, 0);
            self.out.push_shared(chunk);
            self.wr_cont = !frame_fin;
            framing.taken += len;
        }
        framing.emitted = true;
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
        let start = self.message_start(data.remaining());
        let done = self.emit_frames(fin, data, &mut framing, start);
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
        let (opcode, auto_fragment, frame_bytes) = if self.wr_cont {
            (
                Opcode::Continuation,
                self.wr_auto_fragment,
                self.wr_frame_bytes,
            )
        } else {
            (
                self.opts.message_opcode(),
                self.opts.auto_fragment,
                self.opts.write_buffer_bytes(),
            )
        };
        if auto_fragment && len > frame_bytes {
            return None;
        }
        if !self.wr_cont && !fin {
            // A new message in parts: its later parts keep these settings. A message in
            // one frame needs none.
            self.begin_message(MessageStart {
                opcode,
                auto_fragment,
                frame_bytes,
                compress: false,
            });
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

#[cfg(test)]
mod tests {
    use bytes::{Buf, Bytes};

    use crate::net::IoContext;
    use crate::test::Stream as TestStream;
    use crate::websocket::Stream;
    use crate::Role;

    /// The frames of unmasked output: (first header byte, payload).
    fn frames(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while !out.is_empty() {
            let (len, at) = match out[1] {
                126 => (usize::from(u16::from_be_bytes([out[2], out[3]])), 4),
                127 => (
                    u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                n => (usize::from(n), 2),
            };
            assert_eq!(out[1] & 0x80, 0, "a server frame is unmasked");
            frames.push((out[0], out[at..at + len].to_vec()));
            out = &out[at + len..];
        }
        frames
    }

    /// The frames Beast's auto-fragmenting sends for `parts` written in turn (each with its
    /// `fin`), cut at `size` bytes: the first frame of the message binary, then continuations.
    fn expected(parts: &[(&[u8], bool)], size: usize) -> Vec<(u8, Vec<u8>)> {
        let mut frames = Vec::new();
        let mut cont = false;
        for &(part, fin) in parts {
            let pieces: Vec<&[u8]> = if part.is_empty() {
                vec![part]
            } else {
                part.chunks(size).collect()
            };
            let count = pieces.len();
            for (i, piece) in pieces.into_iter().enumerate() {
                let last = fin && i + 1 == count;
                let opcode = if cont { 0x0 } else { 0x2 };
                frames.push((u8::from(last) << 7 | opcode, piece.to_vec()));
                cont = !last;
            }
        }
        frames
    }

    /// Turns the context, taking what `ws` writes, until nothing runs, nothing more is
    /// written and `done()` holds; the bytes written.
    fn drain(ctx: &IoContext, ws: &Stream<TestStream>, done: impl Fn() -> bool) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let ran = ctx.poll();
            let more = ws.next_layer().take_output();
            if ran == 0 && more.is_empty() && done() {
                return out;
            }
            out.extend_from_slice(&more);
        }
        panic!("the output never drained");
    }

    fn payload(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Writes `parts` with `async_write_some` from a server stream, as `Bytes`, as a slice
    /// and as a chain of two pieces, after `before` bytes of a message already queued, and
    /// checks the frames and each handler's byte count.
    fn check(parts: &[(&[u8], bool)], size: usize, before: usize) {
        for kind in 0..3 {
            let ctx = IoContext::new().unwrap();
            let ws = Stream::new(TestStream::new(&ctx));
            ws.open_unchecked(Role::Server);
            ws.set_binary(true);
            ws.set_write_buffer_bytes(size).unwrap();
            let queued = payload(before, 0x55);
            if before > 0 {
                // Output already queued ahead of the write (one unfragmented message).
                ws.set_auto_fragment(false);
                ws.async_write(Bytes::from(queued.clone()), |r, _| r.unwrap());
                ws.set_auto_fragment(true);
            }
            for &(part, fin) in parts {
                let len = part.len();
                let check = move |r: Result<(), crate::Error>, n| {
                    assert_eq!((r, n), (Ok(()), len), "kind {kind}");
                };
                let part = part.to_vec();
                match kind {
                    0 => ws.async_write_some(fin, Bytes::from(part), check),
                    1 => ws.async_write_some(fin, Vec::leak(part) as &[u8], check),
                    _ => {
                        let (a, b) = part.split_at(part.len() / 3);
                        let chain = Bytes::copy_from_slice(a).chain(Bytes::copy_from_slice(b));
                        ws.async_write_some(fin, chain, check)
                    }
                }
                ctx.run();
            }
            let mut want = Vec::new();
            if before > 0 {
                want.push((0x82, queued.clone()));
            }
            want.extend(expected(parts, size));
            let got = frames(&ws.next_layer().take_output());
            assert_eq!(
                got.len(),
                want.len(),
                "kind {kind}, size {size}, before {before}"
            );
            assert!(got == want, "kind {kind}, size {size}, before {before}");
        }
    }

    #[test]
    fn fragmented_server_writes_cut_frames_as_beast_does_whatever_the_buffers() {
        let sizes = [4097, 5119, 5120, 8192, 12_000, 100_000, 300_001];
        for len in sizes {
            let data = payload(len, 1);
            for before in [0, 1000, 60_000, 64 << 10] {
                check(&[(&data, true)], 4096, before);
            }
            check(&[(&data, true)], 1024, 0);
            check(&[(&data, true)], 1500, 0);
        }
        // A message in parts: continuations across writes, the last part short.
        let (a, b, c) = (payload(9000, 2), payload(3000, 3), payload(10, 4));
        check(&[(&a, false), (&b, false), (&c, true)], 4096, 0);
        check(&[(&a, false), (&[], false), (&b, true)], 2048, 500);
    }

    #[test]
    fn a_fragmented_write_is_framed_up_to_the_high_water_mark_and_no_further() {
        use super::super::Core;
        use crate::proto::frame::{FrameHeader, Opcode};
        for (size, before) in [
            (4096, 0),
            (4096, 1000),
            (4096, 60_000),
            (1024, 65_000),
            (3000, 7),
        ] {
            let ctx = IoContext::new().unwrap();
            let mut core = Core::new(TestStream::new(&ctx));
            core.open(Role::Server);
            core.opts.set_write_buffer_bytes(size);
            let high_water = core.opts.high_water();
            if before > 0 {
                core.out.push_copy(&payload(before, 9));
            }
            let mut data = Bytes::from(payload(300_000, 5));
            let (framing, done) = core.write_in_frames(true, &mut data).unwrap();
            assert!(!done, "300 KB do not fit below the mark");
            assert_eq!(framing.taken + data.remaining(), 300_000);
            assert_eq!(framing.taken % size, 0, "whole frames only");
            let frame = size
                + FrameHeader::new(false, Opcode::Continuation, size as u64, None).encoded_len();
            let queued = core.out.len();
            assert!(
                queued >= high_water,
                "{size} {before}: stopped below the mark at {queued}"
            );
            assert!(
                queued - frame < high_water,
                "{size} {before}: a frame past the mark ({queued})"
            );
        }
    }

    #[test]
    fn write_buffer_bytes_changed_in_a_message_applies_from_the_next_message() {
        // As Beast, which sizes its write buffer as a message begins: the parts of the
        // message in progress keep its frame size, and the next message has the new one.
        let ctx = IoContext::new().unwrap();
        let ws = Stream::new(TestStream::new(&ctx));
        ws.open_unchecked(Role::Server);
        ws.set_binary(true);
        let (a, b, c) = (payload(10_000, 1), payload(6_000, 2), payload(2_500, 3));
        ws.async_write_some(false, Bytes::from(a.clone()), |r, n| {
            assert_eq!((r, n), (Ok(()), 10_000))
        });
        ctx.run();
        ws.set_write_buffer_bytes(1000).unwrap();
        ws.async_write_some(true, Bytes::from(b.clone()), |r, n| {
            assert_eq!((r, n), (Ok(()), 6_000))
        });
        ws.async_write(Bytes::from(c.clone()), |r, n| {
            assert_eq!((r, n), (Ok(()), 2_500))
        });
        ctx.run();
        let mut want = expected(&[(&a, false), (&b, true)], 4096);
        want.extend(expected(&[(&c, true)], 1000));
        let got = frames(&ws.next_layer().take_output());
        let sizes: Vec<usize> = got.iter().map(|f| f.1.len()).collect();
        assert_eq!(sizes, [4096, 4096, 1808, 4096, 1904, 1000, 1000, 500]);
        assert!(got == want);

        // A write waiting for the output to drain keeps the size too.
        let ctx = IoContext::new().unwrap();
        let ws = Stream::new(TestStream::new(&ctx));
        ws.open_unchecked(Role::Server);
        ws.set_binary(true);
        ws.next_layer().write_capacity(10_000);
        let data = payload(300_000, 4);
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let d = done.clone();
        ws.async_write(Bytes::from(data.clone()), move |r, n| {
            assert_eq!((r, n), (Ok(()), 300_000));
            d.set(true);
        });
        ws.set_write_buffer_bytes(1000).unwrap();
        let mut out = Vec::new();
        let mut turns = 0;
        while !done.get() {
            ctx.poll();
            out.extend_from_slice(&ws.next_layer().take_output());
            turns += 1;
            assert!(turns < 10_000, "the write never completed");
        }
        assert!(turns > 20, "the write waited for room ({turns} turns)");
        // It completed with its last frames queued: let the output drain.
        out.extend(drain(&ctx, &ws, || true));
        assert!(frames(&out) == expected(&[(&data, true)], 4096));
    }

    #[test]
    fn a_write_that_waits_to_begin_its_message_keeps_the_settings_it_started_with() {
        // Beast latches a message's settings as its first write starts (`begin_msg`), so
        // options changed while that write waits for room apply from the next message.
        let ctx = IoContext::new().unwrap();
        let ws = Stream::new(TestStream::new(&ctx));
        ws.open_unchecked(Role::Server);
        ws.next_layer().write_capacity(10);
        // One frame past the high-water mark: the output is full, no write outstanding.
        ws.set_auto_fragment(false);
        ws.async_write(Bytes::from(payload(100_000, 1)), |r, _| r.unwrap());
        ctx.poll();
        ws.set_binary(true);
        ws.set_auto_fragment(true);
        ws.set_write_buffer_bytes(1000).unwrap();
        let second = payload(2500, 2);
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let d = done.clone();
        ws.async_write(Bytes::from(second.clone()), move |r, n| {
            assert_eq!((r, n), (Ok(()), 2500));
            d.set(true);
        });
        ws.set_binary(false);
        ws.set_auto_fragment(false);
        ws.set_write_buffer_bytes(4096).unwrap();
        let got = frames(&drain(&ctx, &ws, || done.get()));
        assert_eq!(
            got.len(),
            4,
            "the first message, then three frames of 1000 bytes"
        );
        assert_eq!(got[0].0, 0x81, "the first message is text");
        assert!(got[1..] == expected(&[(&second, true)], 1000)[..]);
    }
}
