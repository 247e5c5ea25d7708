//! The connection's corked output: frames queued by operations, written with one vectored
//! write per flush.

use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};

use crate::net::buffers::{Buffers, OutputBufs};
use crate::net::Transport;
use crate::proto::frame::MAX_HEADER_LEN;

/// The most buffers gathered into one vectored write.
const MAX_IOVECS: usize = 64;
/// The gather array of a flush with at most one chunk.
const FEW_IOVECS: usize = 4;
/// The gather array of a flush with a few chunks (a message cut into a few frames).
const SOME_IOVECS: usize = 16;

/// Queued outgoing bytes: small pieces (headers, masked or short payloads) are copied into
/// the stage; large unmasked payloads are queued as the caller's `Bytes`, without a copy.
/// The buffers are lent by the context while output is queued and given back once it is
/// all written, so that an idle connection holds none.
#[derive(Default)]
pub(crate) struct Output {
    bufs: Option<Box<OutputBufs>>,
    queued: usize,
}

impl Output {
    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.queued
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Borrows the context's buffers when none are held.
    #[inline]
    pub(crate) fn take_stage(&mut self, buffers: &Buffers) {
        if self.bufs.is_none() {
            self.bufs = Some(buffers.take_output());
        }
    }

    #[inline]
    fn bufs(&mut self) -> &mut OutputBufs {
        self.bufs.get_or_insert_with(Box::default)
    }

    /// Appends a copy of `bytes`.
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        self.bufs().stage().extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// Appends a frame header, the first `n` bytes of `raw`, and reserves room for `payload`
    /// bytes to be staged after it (one reservation for the frame).
    pub(crate) fn push_header(&mut self, raw: &[u8; MAX_HEADER_LEN], n: usize, payload: usize) {
        self.stage_frame(raw, n, &[], payload);
    }

    /// Appends a whole frame: its header, the first `n` bytes of `raw`, and a copy of its
    /// payload (one reservation and one length update for both).
    #[inline]
    pub(crate) fn push_frame(&mut self, raw: &[u8; MAX_HEADER_LEN], n: usize, payload: &[u8]) {
        self.stage_frame(raw, n, payload, 0);
    }

    /// Stages the header's `n` bytes of `raw` and a copy of `payload`, with room for `more`
    /// bytes after them.
    #[inline(always)]
    fn stage_frame(&mut self, raw: &[u8; MAX_HEADER_LEN], n: usize, payload: &[u8], more: usize) {
        debug_assert!(n <= MAX_HEADER_LEN);
        self.queued += n + payload.len();
        let stage = self.bufs().stage();
        stage.reserve(MAX_HEADER_LEN + payload.len() + more);
        let len = stage.len();
        // SAFETY: room for all of `raw` and the payload after it was reserved just above, so
        // the unaligned write of `MAX_HEADER_LEN` bytes stays inside the allocation; the
        // header's `n` bytes and the payload are written before the length covers them, and
        // the payload (the caller's buffers) cannot overlap the stage's spare room.
        unsafe {
            let spare = stage.spare_capacity_mut().as_mut_ptr().cast::<u8>();
            spare.cast::<[u8; MAX_HEADER_LEN]>().write_unaligned(*raw);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), spare.add(n), payload.len());
            stage.set_len(len + n + payload.len());
        }
    }

    /// Appends `len` bytes taken from `data`, copied, and returns the copy for in-place
    /// transformation (masking).
    pub(crate) fn push_from_buf(&mut self, data: &mut dyn Buf, len: usize) -> &mut [u8] {
        self.queued += len;
        let stage = self.bufs().stage();
        let start = stage.len();
        let mut left = len;
        while left > 0 {
            let chunk = data.chunk();
            let n = chunk.len().min(left);
            stage.extend_from_slice(&chunk[..n]);
            data.advance(n);
            left -= n;
        }
        &mut stage[start..]
    }

    /// Appends a shared chunk without copying it.
    pub(crate) fn push_shared(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.queued += chunk.len();
        self.bufs().push_chunk(chunk);
    }

    /// Writes as much as the transport takes. Returns `Ok(true)` once everything queued is
    /// written, `Ok(false)` when the transport would block.
    pub(crate) fn flush<T: Transport>(&mut self, transport: &mut T) -> io::Result<bool> {
        while self.queued > 0 {
            let queued = self.queued;
            let bufs = self.bufs();
            // Most flushes carry staged bytes and at most one chunk (the staged bytes before
            // it and after it, and the chunk): a small gather array is enough, and is
            // cheaper to set up. Each chunk takes at most two slices (the staged bytes before
            // it, and itself), and the staged bytes after the last chunk one more.
            let slices = 2 * bufs.chunk_count() + 1;
            let written = if slices <= FEW_IOVECS {
                write_gathered::<FEW_IOVECS, T>(bufs, transport)
            } else if slices <= SOME_IOVECS {
                write_gathered::<SOME_IOVECS, T>(bufs, transport)
            } else {
                write_gathered::<MAX_IOVECS, T>(bufs, transport)
            };
            let written = match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            };
            if written == queued {
                // All of it: the buffers are cleared as they go back, below.
                self.queued = 0;
                break;
            }
            bufs.consume(written);
            self.queued -= written;
        }
        // Everything is written: the buffers go back to the context until more output comes.
        if let Some(bufs) = self.bufs.take() {
            transport.handle().buffers().give_output(bufs);
        }
        Ok(true)
    }

    /// Drops everything queued (the connection failed).
    pub(crate) fn discard(&mut self) {
        self.bufs = None;
        self.queued = 0;
    }
}

/// Writes as much of the queued bytes as `N` slices hold with one vectored write.
fn write_gathered<const N: usize, T: Transport>(
    bufs: &OutputBufs,
    transport: &mut T,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); N];
    let count = bufs.gather(&mut slices);
    transport.write_vectored(&slices[..count])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::IoContext;
    use crate::test::Stream;

    #[test]
    fn copies_and_shared_chunks_go_out_in_order_even_with_short_writes() {
        let ctx = IoContext::new().unwrap();
        let (mut a, b) = Stream::pair(&ctx);
        a.write_size(3);
        let mut out = Output::default();
        out.push_copy(b"hdr1");
        out.push_shared(Bytes::from_static(b"-payload-one-"));
        out.push_copy(b"hdr2");
        let mut data = &b"tail"[..];
        out.push_from_buf(&mut data, 4);
        assert_eq!(out.len(), 25);
        assert!(out.flush(&mut a).unwrap());
        assert!(out.is_empty());
        assert_eq!(b.str(), "hdr1-payload-one-hdr2tail");
    }

    #[test]
    fn a_header_stages_only_its_own_bytes() {
        let ctx = IoContext::new().unwrap();
        let (mut a, b) = Stream::pair(&ctx);
        let mut out = Output::default();
        for n in [2usize, 4, 8, 10, 14] {
            let mut raw = [b'#'; MAX_HEADER_LEN];
            raw[..n].fill(b'0' + n as u8 % 10);
            out.push_header(&raw, n, 3);
            let mut data = &b"abc"[..];
            out.push_from_buf(&mut data, 3);
        }
        out.push_header(&[b'!'; MAX_HEADER_LEN], 2, 0);
        assert_eq!(out.len(), 38 + 15 + 2);
        assert!(out.flush(&mut a).unwrap());
        assert_eq!(
            b.str(),
            "22abc4444abc88888888abc0000000000abc44444444444444abc!!"
        );
    }

    #[test]
    fn a_whole_frame_stages_its_header_bytes_then_its_payload() {
        let ctx = IoContext::new().unwrap();
        let (mut a, b) = Stream::pair(&ctx);
        let mut out = Output::default();
        out.push_copy(b"<");
        for n in [2usize, 4, 10, 14] {
            let mut raw = [b'#'; MAX_HEADER_LEN];
            raw[..n].fill(b'0' + n as u8 % 10);
            out.push_frame(&raw, n, b"xy");
        }
        out.push_frame(&[b'!'; MAX_HEADER_LEN], 2, b"");
        // A payload larger than the stage's first allocation grows it once.
        let big = vec![b'z'; 5000];
        out.push_frame(&[b'9'; MAX_HEADER_LEN], 4, &big);
        assert_eq!(out.len(), 1 + 30 + 8 + 2 + 4 + 5000);
        assert!(out.flush(&mut a).unwrap());
        let expected = format!(
            "<22xy4444xy0000000000xy44444444444444xy!!9999{}",
            "z".repeat(5000)
        );
        assert_eq!(b.str(), expected);
    }

    #[test]
    fn many_chunks_go_out_in_order_over_several_gathers() {
        let ctx = IoContext::new().unwrap();
        let (mut a, b) = Stream::pair(&ctx);
        a.write_size(1000);
        let mut out = Output::default();
        let mut expected = String::new();
        for i in 0..150 {
            let header = format!("<{i}>");
            let payload = format!("payload {i};");
            out.push_copy(header.as_bytes());
            out.push_shared(Bytes::from(payload.clone()));
            expected.push_str(&header);
            expected.push_str(&payload);
        }
        out.push_copy(b"end");
        expected.push_str("end");
        while !out.flush(&mut a).unwrap() {}
        assert!(out.is_empty());
        assert_eq!(b.str(), expected);
    }
}
