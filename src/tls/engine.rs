//! The sans-IO engine of a TLS stream: rustls's connection, the next layer, and the two
//! pumps between them (TLS bytes in from the next layer, TLS bytes out to it).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::Shutdown;

use bytes::{Buf, BytesMut};

use crate::error::io_error_from;
use crate::net::Transport;
use crate::{Error, TlsError, TlsErrorKind};

/// Bytes read from the next layer at once (one system call for several records).
const READ_CHUNK: usize = 64 * 1024;

thread_local! {
    /// A scratch buffer for reading from the next layer, shared by the streams of a thread,
    /// so that an idle connection keeps no read buffer of its own. Taken out while in use
    /// (a TLS stream over a TLS stream then simply allocates its own).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Maps a rustls error to ours.
pub(crate) fn map_rustls_error(e: &rustls::Error) -> Error {
    use rustls::Error as R;
    let kind = match e {
        R::InvalidMessage(_)
        | R::InappropriateMessage { .. }
        | R::InappropriateHandshakeMessage { .. }
        | R::PeerSentOversizedRecord => TlsErrorKind::InvalidMessage,
        R::AlertReceived(_) => TlsErrorKind::AlertReceived,
        R::InvalidCertificate(_) | R::NoCertificatesPresented | R::InvalidCertRevocationList(_) => {
            TlsErrorKind::BadCertificate
        }
        R::DecryptError => TlsErrorKind::DecryptError,
        R::PeerIncompatible(_)
        | R::PeerMisbehaved(_)
        | R::HandshakeNotComplete
        | R::NoApplicationProtocol => TlsErrorKind::HandshakeFailure,
        _ => TlsErrorKind::Other,
    };
    Error::Tls(TlsError::new(kind, e.to_string()))
}

/// The next layer as the `io::Write` rustls writes records to.
struct Io<'a, T: Transport>(&'a mut T);

impl<T: Transport> io::Write for Io<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a pull from the next layer achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// TLS bytes (or the end of stream) were handed to rustls.
    Progress,
    /// The next layer has nothing now.
    Blocked,
}

/// The state of one TLS connection over its next layer.
pub(crate) struct Engine<T: Transport> {
    pub(crate) next: T,
    /// Created by the handshake.
    pub(crate) conn: Option<rustls::Connection>,
    /// TLS bytes read from the next layer that rustls could not take yet (its plaintext
    /// buffer was full). Bounded by one read of the next layer.
    pending_in: BytesMut,
    /// The next layer reached end of stream.
    pub(crate) eof: bool,
    /// The first fatal error; every later I/O reports it.
    pub(crate) error: Option<Error>,
    /// `close` was called.
    pub(crate) closed: bool,
    /// Our close_notify was queued.
    pub(crate) close_notify_sent: bool,
    /// The next layer's write side is to be shut down once the TLS output is flushed.
    shutdown_next_after_flush: bool,
    /// The latched readiness this stream reports to its listener.
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

impl<T: Transport> Engine<T> {
    pub(crate) fn new(next: T) -> Engine<T> {
        Engine {
            next,
            conn: None,
            pending_in: BytesMut::new(),
            eof: false,
            error: None,
            closed: false,
            close_notify_sent: false,
            shutdown_next_after_flush: false,
            readable: false,
            writable: false,
        }
    }

    /// The error that ends every operation now, if any.
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.closed {
            return Err(Error::OperationAborted);
        }
        match &self.error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Records a fatal error (the first one wins) and tries to send any alert rustls
    /// queued for the peer. Returns the error to report.
    pub(crate) fn fail(&mut self, e: Error) -> Error {
        if let Some(first) = &self.error {
            return first.clone();
        }
        let e = self.record(e);
        // The alert is a courtesy: the connection is dead either way.
        let _ = self.write_out();
        e
    }

    /// Records a fatal error (the first one wins) and returns the error to report. Both
    /// latches are set, so that the listener's next I/O meets the error.
    fn record(&mut self, e: Error) -> Error {
        self.readable = true;
        self.writable = true;
        self.error.get_or_insert(e).clone()
    }

    /// Hands TLS bytes from `data` to rustls and processes them; leaves in `data` what
    /// rustls could not take (its plaintext buffer is full).
    fn feed(&mut self, data: &mut &[u8]) -> Result<(), Error> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        while !data.is_empty() {
            match conn.read_tls(data) {
                Ok(0) => {
                    // After the peer's close_notify nothing more is read: drop the rest.
                    *data = &[];
                }
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        let e = map_rustls_error(&e);
                        return Err(self.fail(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    let e = Error::Tls(TlsError::new(TlsErrorKind::InvalidMessage, e.to_string()));
                    return Err(self.fail(e));
                }
                // Back-pressure: the plaintext must be read first.
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Moves TLS bytes from the next layer into rustls: first what was kept back, then one
    /// read of the next layer. End of stream is passed on to rustls, which then reports a
    /// clean close (after close_notify) or a truncation.
    pub(crate) fn pull(&mut self) -> Result<Pulled, Error> {
        self.check()?;
        if !self.pending_in.is_empty() {
            let mut kept = std::mem::take(&mut self.pending_in);
            let before = kept.len();
            let mut data: &[u8] = &kept;
            let fed = self.feed(&mut data);
            let taken = before - data.len();
            kept.advance(taken);
            self.pending_in = kept;
            fed?;
            return Ok(if taken > 0 {
                Pulled::Progress
            } else {
                Pulled::Blocked
            });
        }
        if self.eof || !self.next.readiness().is_readable() {
            return Ok(Pulled::Blocked);
        }
        let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        scratch.resize(READ_CHUNK, 0);
        let result = match self.next.read(&mut scratch) {
            Ok(0) => {
                self.eof = true;
                if let Some(conn) = self.conn.as_mut() {
                    let _ = conn.read_tls(&mut &[][..]);
                }
                Ok(Pulled::Progress)
            }
            Ok(n) => {
                let mut data: &[u8] = &scratch[..n];
                let fed = self.feed(&mut data);
                if !data.is_empty() && fed.is_ok() {
                    self.pending_in.extend_from_slice(data);
                }
                fed.map(|()| Pulled::Progress)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Pulled::Blocked),
            Err(e) => Err(self.fail(Error::from(e))),
        };
        SCRATCH.with(|s| *s.borrow_mut() = scratch);
        result
    }

    /// Writes TLS bytes rustls has queued to the next layer until it is done or would
    /// block. `Ok(true)` when nothing is left. Once empty, a pending shutdown of the next
    /// layer's write side is carried out.
    pub(crate) fn write_out(&mut self) -> Result<bool, Error> {
        if let Some(conn) = self.conn.as_mut() {
            while conn.wants_write() {
                if !self.next.readiness().is_writable() {
                    return Ok(false);
                }
                match conn.write_tls(&mut Io(&mut self.next)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(self.record(Error::from(e))),
                }
            }
        }
        if self.shutdown_next_after_flush {
            self.shutdown_next_after_flush = false;
            match self.next.shutdown(Shutdown::Write) {
                // A peer that already reset leaves nothing to shut down.
                Err(e) if e.kind() != io::ErrorKind::NotConnected => {
                    return Err(self.record(Error::from(e)));
                }
                _ => {}
            }
        }
        Ok(true)
    }

    /// Queues our close_notify (once) and, with `then_next`, the shutdown of the next
    /// layer's write side after it.
    pub(crate) fn send_close_notify(&mut self, then_next: bool) {
        if let Some(conn) = self.conn.as_mut() {
            if !self.close_notify_sent {
                conn.send_close_notify();
                self.close_notify_sent = true;
            }
        }
        self.shutdown_next_after_flush |= then_next;
    }

    /// Reads plaintext into `buf`, pulling TLS bytes from the next layer as needed.
    /// `Ok(0)` after the peer's close_notify; [`Error::StreamTruncated`] at an end of
    /// stream without one. Once some plaintext is in, it goes on filling `buf` with what
    /// is available without waiting (rustls hands out at most about 16 KiB at a time), so
    /// that one read takes what one read of the socket brought.
    pub(crate) fn read_plaintext(&mut self, buf: &mut [u8]) -> Result<usize, ReadOutcome> {
        let mut got = 0;
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(ReadOutcome::Failed(Error::from(
                    io::ErrorKind::NotConnected,
                )));
            };
            let outcome = match io::Read::read(&mut conn.reader(), &mut buf[got..]) {
                Ok(0) if got < buf.len() => Ok(()), // the peer's close_notify
                Ok(n) => {
                    got += n;
                    if got == buf.len() {
                        return Ok(got);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => match self.check() {
                    Err(e) => Err(ReadOutcome::Failed(e)),
                    Ok(()) => match self.pull() {
                        // Processing may have queued replies (alerts, key updates).
                        Ok(Pulled::Progress) => match self.write_out() {
                            Ok(_) => continue,
                            Err(e) => Err(ReadOutcome::Failed(e)),
                        },
                        Ok(Pulled::Blocked) => Err(ReadOutcome::WouldBlock),
                        Err(e) => Err(ReadOutcome::Failed(e)),
                    },
                },
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Err(ReadOutcome::Failed(Error::StreamTruncated))
                }
                Err(e) => Err(ReadOutcome::Failed(Error::from(e))),
            };
            // Plaintext already read goes first; the end or the error comes next time.
            return match outcome {
                _ if got > 0 => Ok(got),
                Ok(()) => Ok(0),
                Err(e) => Err(e),
            };
        }
    }

    /// Encrypts as much of `bufs` as rustls's output bound allows and writes it out.
    pub(crate) fn write_plaintext(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check().map_err(io_error_from)?;
        if self.close_notify_sent {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.write_out().map_err(io_error_from)?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        // One call for all the buffers: rustls fills each record across them, so the
        // frames the WebSocket layer gathered leave in few records.
        let n = io::Write::write_vectored(&mut conn.writer(), bufs)?;
        self.write_out().map_err(io_error_from)?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if n == 0 && total > 0 {
            self.writable = false;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }
}

/// Why a plaintext read returned nothing.
pub(crate) enum ReadOutcome {
    WouldBlock,
    Failed(Error),
}
