//! One pass of rustls's unbuffered state machine: records are decrypted in place in our
//! input buffer and encrypted straight into our output buffer, with no buffer of rustls's
//! own in between.

use std::io::IoSlice;

use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, WriteTraffic};

use super::buffers::{Input, Output, Stash};

/// Plaintext bytes in one record we send (rustls's largest fragment).
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// Room reserved per record beyond its plaintext (header, content type, nonce, tag); rustls
/// asks for more when it needs it (a key update ahead of the record).
const RECORD_OVERHEAD: usize = 64;

/// The rustls connection of either side.
pub(crate) enum Connection {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

impl Connection {
    /// True until the handshake has completed.
    pub(crate) fn is_handshaking(&self) -> bool {
        match self {
            Connection::Client(c) => c.is_handshaking(),
            Connection::Server(c) => c.is_handshaking(),
        }
    }

    /// True while rustls holds TLS messages not yet handed to us.
    fn has_queued_messages(&self) -> bool {
        match self {
            Connection::Client(c) => c.wants_write(),
            Connection::Server(c) => c.wants_write(),
        }
    }

    /// The protocol version agreed on.
    pub(crate) fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match self {
            Connection::Client(c) => c.protocol_version(),
            Connection::Server(c) => c.protocol_version(),
        }
    }
}

/// What the caller of a pass wants done once rustls is ready for application data.
pub(crate) enum Want<'a, 'b> {
    /// Plaintext into `buf[*got..]`.
    Read {
        buf: &'a mut [u8],
        got: &'a mut usize,
    },
    /// Encrypt from `bufs`, holding at most `limit` encrypted bytes; `*taken` is set to the
    /// plaintext bytes encrypted.
    Write {
        bufs: &'a [IoSlice<'b>],
        limit: usize,
        taken: &'a mut usize,
        staging: &'a mut Vec<u8>,
    },
    /// Queue our close_notify.
    CloseNotify,
    /// Only what rustls needs (handshake messages, replies, alerts).
    Nothing,
}

/// Where a pass stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// What was wanted is done.
    Done,
    /// rustls needs more TLS bytes from the peer.
    NeedInput,
    /// The peer's close_notify has arrived: no more plaintext.
    PeerClosed,
}

/// What one step of the state machine did.
enum Step {
    Again,
    Stop(Stop),
}

/// The buffers a pass works with.
pub(crate) struct Buffers<'e> {
    pub(crate) input: &'e mut Input,
    pub(crate) output: &'e mut Output,
    pub(crate) stash: &'e mut Stash,
    pub(crate) peer_closed: &'e mut bool,
}

/// Runs rustls's state machine over the pending input until it stops for `want`.
pub(crate) fn pass(
    conn: &mut Connection,
    bufs: &mut Buffers<'_>,
    want: &mut Want<'_, '_>,
) -> Result<Stop, rustls::Error> {
    loop {
        let mut discard = 0;
        let step = {
            let incoming = bufs.input.pending_mut();
            let mut io = StepIo {
                output: &mut *bufs.output,
                stash: &mut *bufs.stash,
                peer_closed: &mut *bufs.peer_closed,
                discard: &mut discard,
            };
            match conn {
                Connection::Client(c) => {
                    let status = c.process_tls_records(incoming);
                    *io.discard += status.discard;
                    status.state.and_then(|s| io.step(s, want))
                }
                Connection::Server(c) => {
                    let status = c.process_tls_records(incoming);
                    *io.discard += status.discard;
                    status.state.and_then(|s| io.step(s, want))
                }
            }
        };
        bufs.input.discard(discard);
        match step? {
            Step::Again => {}
            Step::Stop(stop) => return Ok(stop),
        }
    }
}

/// Collects the alerts rustls queued when it failed, so that they can still leave. rustls
/// hands queued messages out before it looks at any input, so it is asked only while it
/// has some (the failed input is never parsed twice), and given the same pending input as
/// before (its handshake deframer keeps positions in it).
pub(crate) fn drain_alerts(conn: &mut Connection, input: &mut Input, output: &mut Output) {
    let mut stash = Stash::default();
    let mut closed = false;
    // A few passes are plenty for an alert; the bound keeps a confused state finite.
    for _ in 0..8 {
        if !conn.has_queued_messages() {
            return;
        }
        let mut discard = 0;
        let mut io = StepIo {
            output: &mut *output,
            stash: &mut stash,
            peer_closed: &mut closed,
            discard: &mut discard,
        };
        let incoming = input.pending_mut();
        let step = match conn {
            Connection::Client(c) => {
                let status = c.process_tls_records(incoming);
                *io.discard += status.discard;
                status.state.map(|s| io.queued_only(s))
            }
            Connection::Server(c) => {
                let status = c.process_tls_records(incoming);
                *io.discard += status.discard;
                status.state.map(|s| io.queued_only(s))
            }
        };
        input.discard(discard);
        if !matches!(step, Ok(true)) {
            return;
        }
    }
}

struct StepIo<'a> {
    output: &'a mut Output,
    stash: &'a mut Stash,
    peer_closed: &'a mut bool,
    discard: &'a mut usize,
}

impl StepIo<'_> {
    /// Handles the states that only move queued TLS messages to the output; true if the
    /// state was one of them.
    fn queued_only<Data>(&mut self, state: ConnectionState<'_, '_, Data>) -> bool {
        match state {
            ConnectionState::EncodeTlsData(mut e) => {
                let _ = self.encode(|out| e.encode(out));
                true
            }
            ConnectionState::TransmitTlsData(t) => {
                t.done();
                true
            }
            _ => false,
        }
    }

    /// Copies a message rustls has ready into the output, growing it as rustls asks.
    fn encode(
        &mut self,
        mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
    ) -> Result<(), rustls::Error> {
        let mut need = RECORD_OVERHEAD;
        // rustls names the size it needs; the second try has it.
        for _ in 0..2 {
            match encode(self.output.spare_mut(need)) {
                Ok(n) => {
                    self.output.filled(n);
                    return Ok(());
                }
                Err(EncodeError::InsufficientSize(s)) => need = s.required_size,
                Err(EncodeError::AlreadyEncoded) => return Ok(()),
            }
        }
        Err(rustls::Error::General("a TLS message did not fit".into()))
    }

    fn step<Data>(
        &mut self,
        state: ConnectionState<'_, '_, Data>,
        want: &mut Want<'_, '_>,
    ) -> Result<Step, rustls::Error> {
        match state {
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(record) = r.next_record() {
                    let record = record?;
                    *self.discard += record.discard;
                    self.deliver(record.payload, want);
                }
                Ok(match want {
                    Want::Read { buf, got } if **got == buf.len() => Step::Stop(Stop::Done),
                    _ => Step::Again,
                })
            }
            ConnectionState::EncodeTlsData(mut e) => {
                self.encode(|out| e.encode(out))?;
                Ok(Step::Again)
            }
            ConnectionState::TransmitTlsData(t) => {
                // The bytes are in our output, in order; they leave with the next flush.
                t.done();
                Ok(Step::Again)
            }
            ConnectionState::BlockedHandshake => Ok(Step::Stop(Stop::NeedInput)),
            ConnectionState::PeerClosed => {
                *self.peer_closed = true;
                Ok(Step::Again)
            }
            ConnectionState::Closed => {
                *self.peer_closed = true;
                Ok(Step::Stop(match want {
                    Want::Read { .. } | Want::Nothing => Stop::PeerClosed,
                    // Both close_notify are out: nothing more may be written.
                    Want::Write { .. } | Want::CloseNotify => Stop::Done,
                }))
            }
            ConnectionState::WriteTraffic(mut w) => self.write_traffic(&mut w, want),
            // Early data is never accepted (the server configuration allows none).
            _ => Err(rustls::Error::General("unexpected TLS state".into())),
        }
    }

    /// Hands plaintext to the reader, or keeps it for the next read.
    fn deliver(&mut self, payload: &[u8], want: &mut Want<'_, '_>) {
        let mut rest = payload;
        if let Want::Read { buf, got } = want {
            if self.stash.is_empty() {
                let n = rest.len().min(buf.len() - **got);
                buf[**got..**got + n].copy_from_slice(&rest[..n]);
                **got += n;
                rest = &rest[n..];
            }
        }
        if !rest.is_empty() {
            self.stash.push(rest);
        }
    }

    fn write_traffic<Data>(
        &mut self,
        w: &mut WriteTraffic<'_, Data>,
        want: &mut Want<'_, '_>,
    ) -> Result<Step, rustls::Error> {
        match want {
            Want::Read { .. } | Want::Nothing if *self.peer_closed => {
                Ok(Step::Stop(Stop::PeerClosed))
            }
            Want::Read { .. } | Want::Nothing => Ok(Step::Stop(Stop::NeedInput)),
            Want::CloseNotify => {
                let mut need = RECORD_OVERHEAD;
                for _ in 0..2 {
                    match w.queue_close_notify(self.output.spare_mut(need)) {
                        Ok(n) => {
                            self.output.filled(n);
                            return Ok(Step::Stop(Stop::Done));
                        }
                        Err(e) => need = encrypt_retry_size(e)?,
                    }
                }
                Err(rustls::Error::General("close_notify did not fit".into()))
            }
            Want::Write {
                bufs,
                limit,
                taken,
                staging,
            } => {
                **taken = self.encrypt_vectored(w, bufs, *limit, staging)?;
                Ok(Step::Stop(Stop::Done))
            }
        }
    }

    /// Encrypts `bufs` in full records (frames share records), straight from the caller's
    /// buffer when one buffer holds a whole record, through `staging` otherwise. Stops
    /// before the output would pass `limit` (one record always fits in an empty output).
    fn encrypt_vectored<Data>(
        &mut self,
        w: &mut WriteTraffic<'_, Data>,
        bufs: &[IoSlice<'_>],
        limit: usize,
        staging: &mut Vec<u8>,
    ) -> Result<usize, rustls::Error> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let (mut index, mut offset) = (0, 0);
        let mut taken = 0;
        while taken < total {
            let size = RECORD_PLAINTEXT.min(total - taken);
            let held = self.output.pending().len();
            if held > 0 && held + size + RECORD_OVERHEAD > limit {
                break;
            }
            while offset == bufs[index].len() {
                index += 1;
                offset = 0;
            }
            let current = &bufs[index][offset..];
            let plaintext: &[u8] = if current.len() >= size {
                offset += size;
                &current[..size]
            } else {
                staging.clear();
                while staging.len() < size {
                    let piece = &bufs[index][offset..];
                    let n = piece.len().min(size - staging.len());
                    staging.extend_from_slice(&piece[..n]);
                    offset += n;
                    if offset == bufs[index].len() && staging.len() < size {
                        index += 1;
                        offset = 0;
                    }
                }
                staging
            };
            self.encrypt_record(w, plaintext)?;
            taken += size;
        }
        Ok(taken)
    }

    fn encrypt_record<Data>(
        &mut self,
        w: &mut WriteTraffic<'_, Data>,
        plaintext: &[u8],
    ) -> Result<(), rustls::Error> {
        let mut need = plaintext.len() + RECORD_OVERHEAD;
        for _ in 0..2 {
            match w.encrypt(plaintext, self.output.spare_mut(need)) {
                Ok(n) => {
                    self.output.filled(n);
                    return Ok(());
                }
                Err(e) => need = encrypt_retry_size(e)?,
            }
        }
        Err(rustls::Error::General("a TLS record did not fit".into()))
    }
}

/// The output room rustls asks for, or the error that ends the connection.
fn encrypt_retry_size(e: EncryptError) -> Result<usize, rustls::Error> {
    match e {
        EncryptError::InsufficientSize(s) => Ok(s.required_size),
        EncryptError::EncryptExhausted => Err(rustls::Error::EncryptError),
    }
}
