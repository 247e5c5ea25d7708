//! The connection's corked output: frames queued by operations, written with one vectored
//! write per flush.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes, BytesMut};

use crate::net::buffers::Buffers;
use crate::net::Transport;

/// The most buffers gathered into one vectored write.
const MAX_IOVECS: usize = 64;

/// Queued outgoing bytes: small pieces (headers, masked or short payloads) are copied into
/// `stage`; large unmasked payloads are queued as the caller's `Bytes`, without a copy.
#[derive(Default)]
pub(crate) struct Output {
    chunks: VecDeque<Bytes>,
    stage: BytesMut,
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

    /// Borrows an output stage from the context when none is held (the stage goes back once
    /// everything queued is written, so that an idle connection holds none).
    pub(crate) fn take_stage(&mut self, buffers: &Buffers) {
        if self.stage.capacity() == 0 {
            self.stage = buffers.take_stage();
        }
    }

    /// Appends a copy of `bytes`.
    pub(crate) fn push_copy(&mut self, bytes: &[u8]) {
        self.stage.extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// Appends `len` bytes taken from `data`, copied, and returns the copy for in-place
    /// transformation (masking).
    pub(crate) fn push_from_buf(&mut self, data: &mut dyn Buf, len: usize) -> &mut [u8] {
        let start = self.stage.len();
        let mut left = len;
        while left > 0 {
            let chunk = data.chunk();
            let n = chunk.len().min(left);
            self.stage.extend_from_slice(&chunk[..n]);
            data.advance(n);
            left -= n;
        }
        self.queued += len;
        &mut self.stage[start..]
    }

    /// Appends a shared chunk without copying it.
    pub(crate) fn push_shared(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        if !self.stage.is_empty() {
            self.chunks.push_back(self.stage.split().freeze());
        }
        self.queued += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Writes as much as the transport takes. Returns `Ok(true)` once everything queued is
    /// written, `Ok(false)` when the transport would block.
    pub(crate) fn flush<T: Transport>(&mut self, transport: &mut T) -> io::Result<bool> {
        while self.queued > 0 {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for chunk in self.chunks.iter().take(MAX_IOVECS - 1) {
                    slices[count] = IoSlice::new(chunk);
                    count += 1;
                }
                // The staged bytes follow every chunk: they go only with the last one.
                if count == self.chunks.len() && !self.stage.is_empty() {
                    slices[count] = IoSlice::new(&self.stage);
                    count += 1;
                }
                match transport.write_vectored(&slices[..count]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            self.consume(written);
        }
        // Everything is written: the stage goes back to the context (or is freed) until
        // more output comes.
        let stage = std::mem::take(&mut self.stage);
        transport.handle().buffers().give_stage(stage);
        Ok(true)
    }

    fn consume(&mut self, mut n: usize) {
        self.queued -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    if front.len() <= n {
                        n -= front.len();
                        self.chunks.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
                None => {
                    if n >= self.stage.len() {
                        // From its start again: the allocation keeps its whole capacity.
                        self.stage.clear();
                    } else {
                        self.stage.advance(n);
                    }
                    n = 0;
                }
            }
        }
    }

    /// Drops everything queued (the connection failed).
    pub(crate) fn discard(&mut self) {
        self.chunks.clear();
        self.stage.clear();
        self.queued = 0;
    }
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
}
