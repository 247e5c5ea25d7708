//! The sans-IO engine of a TLS stream: rustls's connection, the next layer, and the two
//! pumps between them (TLS bytes in from the next layer, TLS bytes out to it). rustls runs
//! unbuffered: it decrypts in place in our input buffer and encrypts into our output
//! buffer, which leaves in one write of the next layer per turn.

use std::io::{self, IoSlice};
use std::net::Shutdown;

use super::buffers::{give_staging, take_staging, Input, Output, Stash};
use super::records::{self, Buffers, Connection, Stop, Want};
use crate::error::io_error_from;
use crate::net::Transport;
use crate::{Error, TlsError, TlsErrorKind};

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

/// What a pull from the next layer achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pulled {
    /// TLS bytes arrived.
    Progress,
    /// The next layer has nothing now.
    Blocked,
    /// The next layer reached end of stream.
    Eof,
}

/// The state of one TLS connection over its next layer.
pub(crate) struct Engine<T: Transport> {
    pub(crate) next: T,
    /// Created by the handshake.
    pub(crate) conn: Option<Connection>,
    input: Input,
    output: Output,
    /// Plaintext decrypted ahead of the reader.
    stash: Stash,
    /// The peer's close_notify has arrived.
    peer_closed: bool,
    /// The next layer reached end of stream.
    pub(crate) eof: bool,
    /// The first fatal error; every later I/O reports it.
    pub(crate) error: Option<Error>,
    /// `close` was called.
    pub(crate) closed: bool,
    /// Our close_notify was asked for: nothing more may be written.
    pub(crate) close_notify_sent: bool,
    /// Our close_notify still has to be queued (rustls takes it once it may send).
    close_notify_pending: bool,
    /// The next layer's write side is to be shut down once the TLS output is flushed.
    shutdown_next_after_flush: bool,
    /// The bound of held encrypted bytes (see `Stream::set_output_limit`).
    pub(crate) output_limit: usize,
    /// The latched readiness this stream reports to its listener.
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

impl<T: Transport> Engine<T> {
    pub(crate) fn new(next: T, output_limit: usize) -> Engine<T> {
        Engine {
            next,
            conn: None,
            input: Input::default(),
            output: Output::default(),
            stash: Stash::default(),
            peer_closed: false,
            eof: false,
            error: None,
            closed: false,
            close_notify_sent: false,
            close_notify_pending: false,
            shutdown_next_after_flush: false,
            output_limit,
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
        if let Some(conn) = self.conn.as_mut() {
            records::drain_alerts(conn, &mut self.input, &mut self.output);
        }
        // The alert is a courtesy: the connection is dead either way.
        let _ = self.flush();
        e
    }

    /// Records a fatal error (the first one wins) and returns the error to report. Both
    /// latches are set, so that the listener's next I/O meets the error.
    fn record(&mut self, e: Error) -> Error {
        self.readable = true;
        self.writable = true;
        self.error.get_or_insert(e).clone()
    }

    /// Runs rustls over the pending input until it stops for `want`.
    fn run(&mut self, want: &mut Want<'_, '_>) -> Result<Stop, Error> {
        self.check()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::from(io::Error::from(io::ErrorKind::NotConnected)));
        };
        let mut bufs = Buffers {
            input: &mut self.input,
            output: &mut self.output,
            stash: &mut self.stash,
            peer_closed: &mut self.peer_closed,
        };
        match records::pass(conn, &mut bufs, want) {
            Ok(stop) => Ok(stop),
            Err(e) => {
                let e = map_rustls_error(&e);
                Err(self.fail(e))
            }
        }
    }

    /// Advances rustls with what it has (handshake messages, replies): `Ok(true)` when it
    /// needs more TLS bytes from the peer.
    pub(crate) fn process(&mut self) -> Result<bool, Error> {
        let stop = self.run(&mut Want::Nothing)?;
        if !self.stash.is_empty() {
            self.readable = true;
        }
        Ok(stop == Stop::NeedInput)
    }

    /// One read of the next layer into the input buffer. A full input buffer (a record
    /// larger than TLS allows) fails the connection.
    pub(crate) fn pull(&mut self) -> Result<Pulled, Error> {
        self.check()?;
        if self.eof {
            return Ok(Pulled::Eof);
        }
        if !self.next.readiness().is_readable() {
            return Ok(Pulled::Blocked);
        }
        let Some(spare) = self.input.spare_mut() else {
            let e = TlsError::new(TlsErrorKind::InvalidMessage, "TLS record too large");
            return Err(self.fail(Error::Tls(e)));
        };
        match self.next.read(spare) {
            Ok(0) => {
                self.eof = true;
                self.input.discard(0);
                Ok(Pulled::Eof)
            }
            Ok(n) => {
                self.input.filled(n);
                Ok(Pulled::Progress)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.input.discard(0);
                Ok(Pulled::Blocked)
            }
            Err(e) => Err(self.fail(Error::from(e))),
        }
    }

    /// Writes the encrypted bytes held to the next layer until none is left or it would
    /// block; queues a close_notify asked for earlier first. `Ok(true)` when nothing is
    /// left. Once empty, a pending shutdown of the next layer's write side is carried out.
    pub(crate) fn write_out(&mut self) -> Result<bool, Error> {
        if self.close_notify_pending && self.error.is_none() {
            self.queue_close_notify()?;
        }
        if !self.flush()? {
            return Ok(false);
        }
        if self.shutdown_next_after_flush && !self.close_notify_pending {
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

    /// Writes the held encrypted bytes; `Ok(true)` when none is left.
    fn flush(&mut self) -> Result<bool, Error> {
        while !self.output.pending().is_empty() {
            if !self.next.readiness().is_writable() {
                return Ok(false);
            }
            let pending = [IoSlice::new(self.output.pending())];
            match self.next.write_vectored(&pending) {
                Ok(0) => return Ok(false),
                Ok(n) => self.output.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(self.record(Error::from(e))),
            }
        }
        Ok(true)
    }

    /// Queues our close_notify (once) and, with `then_next`, the shutdown of the next
    /// layer's write side after it.
    pub(crate) fn send_close_notify(&mut self, then_next: bool) {
        if self.conn.is_some() && !self.close_notify_sent {
            self.close_notify_sent = true;
            self.close_notify_pending = true;
        }
        self.shutdown_next_after_flush |= then_next;
    }

    /// Has rustls encrypt our close_notify into the output, once it may send (during the
    /// handshake there is nothing to close: the next layer's shutdown tells the peer).
    fn queue_close_notify(&mut self) -> Result<(), Error> {
        let handshaking = self.conn.as_ref().is_none_or(Connection::is_handshaking);
        if handshaking {
            self.close_notify_pending = false;
            return Ok(());
        }
        let stop = self.run(&mut Want::CloseNotify)?;
        if stop == Stop::Done {
            self.close_notify_pending = false;
        }
        Ok(())
    }

    /// Reads plaintext into `buf`, pulling TLS bytes from the next layer as needed.
    /// `Ok(0)` after the peer's close_notify; [`Error::StreamTruncated`] at an end of
    /// stream without one. Once some plaintext is in, it goes on filling `buf` with what
    /// is available without waiting, so that one read takes what one read of the next
    /// layer brought, and a short read means the next layer had no more.
    pub(crate) fn read_plaintext(&mut self, buf: &mut [u8]) -> Result<usize, ReadOutcome> {
        let mut got = self.stash.take_into(buf);
        if got == buf.len() {
            return Ok(got);
        }
        loop {
            let stop = self.run(&mut Want::Read {
                buf: &mut *buf,
                got: &mut got,
            });
            // Processing may have queued replies (alerts, key updates).
            let flushed = stop.as_ref().map_or(Ok(true), |_| self.write_out());
            let outcome = match (stop, flushed) {
                (Err(e), _) | (_, Err(e)) => Err(ReadOutcome::Failed(e)),
                (Ok(Stop::Done | Stop::PeerClosed), _) => Ok(()),
                (Ok(Stop::NeedInput), _) => match self.pull() {
                    Ok(Pulled::Progress) => continue,
                    Ok(Pulled::Blocked) => Err(ReadOutcome::WouldBlock),
                    Ok(Pulled::Eof) => Err(ReadOutcome::Failed(Error::StreamTruncated)),
                    Err(e) => Err(ReadOutcome::Failed(e)),
                },
            };
            // Plaintext already read goes first; the end or the error comes next time.
            return match outcome {
                _ if got > 0 => Ok(got),
                Ok(()) => Ok(0),
                Err(e) => Err(e),
            };
        }
    }

    /// Encrypts as much of `bufs` as the output bound allows and writes it out.
    pub(crate) fn write_plaintext(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.check().map_err(io_error_from)?;
        if self.close_notify_sent {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if self.conn.is_none() {
            return Err(io::ErrorKind::NotConnected.into());
        }
        self.write_out().map_err(io_error_from)?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let mut taken = 0;
        let mut staging = take_staging();
        let stop = self.run(&mut Want::Write {
            bufs,
            limit: self.output_limit,
            taken: &mut taken,
            staging: &mut staging,
        });
        give_staging(staging);
        if !self.stash.is_empty() {
            self.readable = true;
        }
        stop.map_err(io_error_from)?;
        self.write_out().map_err(io_error_from)?;
        if taken == 0 {
            self.writable = false;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }
}

/// Why a plaintext read returned nothing.
pub(crate) enum ReadOutcome {
    WouldBlock,
    Failed(Error),
}
