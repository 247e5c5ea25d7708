//! `test::Stream`: an in-memory connected transport (Beast's `test::stream`).

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::rc::{Rc, Weak};

use bytes::{Buf, Bytes, BytesMut};

use super::fail_count::FailCount;
use crate::error::io_error_from;
use crate::net::stream_core::{async_ops_via_core, transport_via_core, RawIo, StreamCore};
use crate::net::{Handle, Readiness};
use crate::Error;

#[derive(Default)]
struct Counters {
    nread: Cell<usize>,
    nwrite: Cell<usize>,
    nread_bytes: Cell<usize>,
    nwrite_bytes: Cell<usize>,
}

pub(crate) struct MemIo {
    input: RefCell<BytesMut>,
    /// What this end wrote while it had no peer.
    output: RefCell<BytesMut>,
    peer: RefCell<Weak<StreamCore<MemIo>>>,
    read_size: Cell<usize>,
    write_size: Cell<usize>,
    /// The most bytes this end's writes may leave unread (at the peer, or in `output`).
    write_capacity: Cell<usize>,
    fail: RefCell<Option<FailCount>>,
    open: Cell<bool>,
    /// After the input drains, reads see end of stream.
    input_eof: Cell<bool>,
    /// Writes fail with `ConnectionReset` (the peer closed or was dropped).
    peer_gone: Cell<bool>,
    /// `shutdown(Write)` was called: writes fail with `BrokenPipe`.
    write_shut: Cell<bool>,
    counters: Counters,
}

impl MemIo {
    fn check_fail(&self) -> io::Result<()> {
        match self.fail.borrow().as_ref() {
            Some(fc) => fc.fail().map_err(io_error_from),
            None => Ok(()),
        }
    }

    fn peer(&self) -> Option<Rc<StreamCore<MemIo>>> {
        self.peer.borrow().upgrade()
    }
}

/// Wakes `core`'s reader from the run loop.
fn notify(core: &StreamCore<MemIo>, readiness: Readiness) {
    if let Some(token) = core.token.get() {
        core.handle.signal(token, readiness);
    }
}

impl RawIo for MemIo {
    const SHORT_READ_DRAINS: bool = false;

    fn raw_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.check_fail()?;
        if !self.open.get() {
            return Err(io_error_from(Error::OperationAborted));
        }
        let mut input = self.input.borrow_mut();
        if input.is_empty() {
            return if self.input_eof.get() {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(input.len()).min(self.read_size.get());
        buf[..n].copy_from_slice(&input[..n]);
        input.advance(n);
        drop(input);
        if let Some(p) = self.peer() {
            if p.io.write_capacity.get() != usize::MAX {
                // The peer's writes may be waiting for room.
                notify(&p, Readiness::WRITABLE);
            }
        }
        self.counters.nread.set(self.counters.nread.get() + 1);
        self.counters
            .nread_bytes
            .set(self.counters.nread_bytes.get() + n);
        Ok(n)
    }

    fn raw_writev(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check_fail()?;
        if !self.open.get() {
            return Err(io_error_from(Error::OperationAborted));
        }
        if self.write_shut.get() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.peer_gone.get() {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let peer = self.peer();
        let mut written = 0;
        {
            let mut out_own;
            let mut out_peer;
            let out: &mut BytesMut = match &peer {
                Some(p) => {
                    out_peer = p.io.input.borrow_mut();
                    &mut out_peer
                }
                None => {
                    out_own = self.output.borrow_mut();
                    &mut out_own
                }
            };
            let room = self.write_capacity.get().saturating_sub(out.len());
            if room == 0 && bufs.iter().any(|b| !b.is_empty()) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut left = self.write_size.get().min(room);
            for b in bufs {
                let n = b.len().min(left);
                out.extend_from_slice(&b[..n]);
                written += n;
                left -= n;
                if left == 0 {
                    break;
                }
            }
        }
        self.counters.nwrite.set(self.counters.nwrite.get() + 1);
        self.counters
            .nwrite_bytes
            .set(self.counters.nwrite_bytes.get() + written);
        if let Some(p) = peer {
            if written > 0 {
                notify(&p, Readiness::READABLE);
            }
        }
        Ok(written)
    }

    fn raw_shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.check_fail()?;
        if !self.open.get() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.write_shut.set(true);
            if let Some(p) = self.peer() {
                p.io.input_eof.set(true);
                notify(&p, Readiness::READABLE);
            }
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.input_eof.set(true);
            self.input.borrow_mut().clear();
        }
        Ok(())
    }

    fn raw_close(&self) {
        if !self.open.replace(false) {
            return;
        }
        if let Some(p) = self.peer() {
            p.io.input_eof.set(true);
            p.io.peer_gone.set(true);
            notify(&p, Readiness::READABLE | Readiness::WRITABLE);
        }
    }

    fn raw_is_open(&self) -> bool {
        self.open.get()
    }
}

impl Drop for MemIo {
    fn drop(&mut self) {
        self.raw_close();
    }
}

/// One end of an in-memory connection (Beast's `test::stream`).
///
/// Bytes written at one end become readable at the other; completions are always posted,
/// never run inline. Knobs make I/O short ([`read_size`](Stream::read_size),
/// [`write_size`](Stream::write_size)), inject input ([`append`](Stream::append)), count
/// calls, and inject failures ([`set_fail_count`](Stream::set_fail_count)). Closing or
/// dropping one end lets the other read what is left and then see end of stream; its
/// writes then fail with `ConnectionReset`.
///
/// ```
/// use rbeast::net::{FlatBuffer, IoContext};
/// use rbeast::test::Stream;
/// let ctx = IoContext::new().unwrap();
/// let (a, b) = Stream::pair(&ctx);
/// a.async_write(&b"ping"[..], |r, n| assert_eq!((r, n), (Ok(()), 4)));
/// let buf = FlatBuffer::new();
/// let got = buf.clone();
/// b.async_read(&buf, 4, move |r, _| {
///     r.unwrap();
///     assert_eq!(&*got.data(), b"ping");
/// });
/// ctx.run();
/// ```
#[derive(Clone)]
pub struct Stream {
    pub(crate) core: Rc<StreamCore<MemIo>>,
}

transport_via_core!(Stream);
async_ops_via_core!(
    Stream,
    "# let ctx = rbeast::net::IoContext::new().unwrap();\n# let (s, _peer) = rbeast::test::Stream::pair(&ctx);"
);

impl Stream {
    /// A stream with no peer: its input comes from [`append`](Stream::append), its writes
    /// are kept for [`take_output`](Stream::take_output).
    ///
    /// ```
    /// use rbeast::net::Transport;
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let mut s = rbeast::test::Stream::new(&ctx);
    /// s.write_vectored(&[std::io::IoSlice::new(b"out")]).unwrap();
    /// assert_eq!(&s.take_output()[..], b"out");
    /// ```
    pub fn new(handle: &Handle) -> Stream {
        let io = MemIo {
            input: RefCell::new(BytesMut::new()),
            output: RefCell::new(BytesMut::new()),
            peer: RefCell::new(Weak::new()),
            read_size: Cell::new(usize::MAX),
            write_size: Cell::new(usize::MAX),
            write_capacity: Cell::new(usize::MAX),
            fail: RefCell::new(None),
            open: Cell::new(true),
            input_eof: Cell::new(false),
            peer_gone: Cell::new(false),
            write_shut: Cell::new(false),
            counters: Counters::default(),
        };
        Stream {
            core: StreamCore::new(handle, io, true),
        }
    }

    /// Two connected ends.
    ///
    /// ```
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, b) = rbeast::test::Stream::pair(&ctx);
    /// # drop((a, b));
    /// ```
    pub fn pair(handle: &Handle) -> (Stream, Stream) {
        let a = Stream::new(handle);
        let b = Stream::new(handle);
        *a.core.io.peer.borrow_mut() = Rc::downgrade(&b.core);
        *b.core.io.peer.borrow_mut() = Rc::downgrade(&a.core);
        (a, b)
    }

    /// Makes every I/O call of this end consult `fc` (reads, writes and shutdowns).
    ///
    /// ```
    /// use rbeast::net::Transport;
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let mut s = rbeast::test::Stream::new(&ctx);
    /// s.set_fail_count(rbeast::test::FailCount::new(1));
    /// let e = s.write_vectored(&[std::io::IoSlice::new(b"x")]).unwrap_err();
    /// assert_eq!(rbeast::Error::from(e), rbeast::Error::TestFailure);
    /// ```
    pub fn set_fail_count(&self, fc: FailCount) {
        *self.core.io.fail.borrow_mut() = Some(fc);
    }

    /// Caps the bytes returned by each read (at least 1).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// a.read_size(1);
    /// ```
    pub fn read_size(&self, n: usize) {
        self.core.io.read_size.set(n.max(1));
    }

    /// Caps the bytes taken by each write (at least 1).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// a.write_size(3);
    /// ```
    pub fn write_size(&self, n: usize) {
        self.core.io.write_size.set(n.max(1));
    }

    /// Bounds the bytes this end's writes may leave unread, as a socket's buffers do: a
    /// write that finds that many waiting at the peer (or, with no peer, in the output not
    /// yet taken) fails with `WouldBlock`, so that operations wait, and the peer's reads
    /// (or [`take_output`](Stream::take_output)) make room. Unbounded by default (at least
    /// 1).
    ///
    /// ```
    /// use rbeast::net::Transport;
    /// let ctx = rbeast::net::IoContext::new().unwrap();
    /// let mut s = rbeast::test::Stream::new(&ctx);
    /// s.write_capacity(4);
    /// assert_eq!(s.write_vectored(&[std::io::IoSlice::new(b"abcdef")]).unwrap(), 4);
    /// let e = s.write_vectored(&[std::io::IoSlice::new(b"ef")]).unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    /// assert_eq!(&s.take_output()[..], b"abcd");
    /// assert_eq!(s.write_vectored(&[std::io::IoSlice::new(b"ef")]).unwrap(), 2);
    /// ```
    pub fn write_capacity(&self, n: usize) {
        self.core.io.write_capacity.set(n.max(1));
    }

    /// Appends raw bytes to this end's input, as if the peer had written them.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::test::Stream::new(&ctx);
    /// s.append(b"\x81\x00");
    /// assert_eq!(s.str(), "\u{81}\u{0}");
    /// ```
    pub fn append(&self, bytes: &[u8]) {
        self.core.io.input.borrow_mut().extend_from_slice(bytes);
        notify(&self.core, Readiness::READABLE);
    }

    /// The unread input, as a string (bytes mapped one to one to `char`s so that binary
    /// frames can be compared).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::test::Stream::new(&ctx);
    /// s.append(b"abc");
    /// assert_eq!(s.str(), "abc");
    /// ```
    pub fn str(&self) -> String {
        self.core
            .io
            .input
            .borrow()
            .iter()
            .map(|&b| b as char)
            .collect()
    }

    /// The unread input bytes.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::test::Stream::new(&ctx);
    /// s.append(b"abc");
    /// assert_eq!(&s.input()[..], b"abc");
    /// ```
    pub fn input(&self) -> Bytes {
        Bytes::copy_from_slice(&self.core.io.input.borrow())
    }

    /// Takes what this end wrote while it had no peer.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::test::Stream::new(&ctx);
    /// assert!(s.take_output().is_empty());
    /// ```
    pub fn take_output(&self) -> Bytes {
        let out = self.core.io.output.borrow_mut().split().freeze();
        if self.core.io.write_capacity.get() != usize::MAX {
            // Writes may be waiting for room.
            notify(&self.core, Readiness::WRITABLE);
        }
        out
    }

    /// Closes this end: its pending operations abort; the peer reads what is left, then
    /// sees end of stream, and its writes fail with `ConnectionReset`.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// a.close();
    /// ```
    pub fn close(&self) {
        self.core.close();
    }

    /// Makes this end see end of stream once its input is drained, as if the peer had
    /// closed.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::test::Stream::new(&ctx);
    /// s.close_remote();
    /// ```
    pub fn close_remote(&self) {
        self.core.io.input_eof.set(true);
        notify(&self.core, Readiness::READABLE);
    }

    /// True until [`close`](Stream::close).
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let s = rbeast::test::Stream::new(&ctx);
    /// assert!(s.is_open());
    /// ```
    pub fn is_open(&self) -> bool {
        self.core.io.open.get()
    }

    /// Read calls that returned data.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert_eq!(rbeast::test::Stream::new(&ctx).nread(), 0);
    /// ```
    pub fn nread(&self) -> usize {
        self.core.io.counters.nread.get()
    }

    /// Bytes read.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert_eq!(rbeast::test::Stream::new(&ctx).nread_bytes(), 0);
    /// ```
    pub fn nread_bytes(&self) -> usize {
        self.core.io.counters.nread_bytes.get()
    }

    /// Write calls.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert_eq!(rbeast::test::Stream::new(&ctx).nwrite(), 0);
    /// ```
    pub fn nwrite(&self) -> usize {
        self.core.io.counters.nwrite.get()
    }

    /// Bytes written.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// assert_eq!(rbeast::test::Stream::new(&ctx).nwrite_bytes(), 0);
    /// ```
    pub fn nwrite_bytes(&self) -> usize {
        self.core.io.counters.nwrite_bytes.get()
    }
}
