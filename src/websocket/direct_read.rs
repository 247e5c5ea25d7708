//! Large payloads read straight into the caller's buffer.
//!
//! Once the read buffer holds nothing more of a frame whose remaining payload is large, the
//! rest is read from the transport directly into the read operation's [`FlatBuffer`]
//! (reserved, not zero-filled, over TCP), then unmasked and checked for UTF-8 in place:
//! no copy out of the read buffer, and a read as large as the frame allows instead of
//! one per lent buffer.
//!
//! [`FlatBuffer`]: crate::net::FlatBuffer

use std::any::Any;
use std::io;
use std::mem::MaybeUninit;

use super::core::{Consumer, Core, Status, Step};
use crate::net::{Handle, TcpStream, Transport};
use crate::proto::mask::apply_mask;
use crate::Error;

/// Frames with at least this much payload left bypass the read buffer.
const DIRECT_MIN: u64 = 64 * 1024;

/// The most one direct read reserves in the caller's buffer: the rest of a larger frame is
/// read in pieces, so that the buffer grows with the bytes that arrive, not with the length
/// a header announces (up to 2^63 bytes with `read_message_max` 0).
const DIRECT_MAX: usize = 1024 * 1024;

impl<T: Transport> Core<T> {
    /// Reads payload of the current (uncompressed) frame straight into the read operation's
    /// buffer, when the frame is large and nothing of it is buffered. `None` when the
    /// ordinary path applies (read into the read buffer, then copy).
    pub(crate) fn read_payload_direct(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
    ) -> Option<Step> {
        let frame = self.rd_frame?;
        let op = self.read_op.as_ref()?;
        if consumer != Consumer::Read
            || self.rd_remain < DIRECT_MIN
            || !self.rd_buf.is_empty()
            || !self.transport.readiness().is_readable()
        {
            return None;
        }
        let want = usize::try_from(self.rd_remain)
            .unwrap_or(usize::MAX)
            .min(op.limit - op.n)
            .min(DIRECT_MAX);
        if want == 0 || want > op.buffer.max_size() - op.buffer.size() {
            return None; // the ordinary path completes the read or reports the overflow
        }
        let buffer = op.buffer.clone();
        let any: &mut dyn Any = &mut self.transport;
        let read = match any.downcast_mut::<TcpStream>() {
            // SAFETY: `TcpStream::read_uninit` returns how many bytes at the start of the
            // slice it initialised (socket2's `recv` contract).
            Some(tcp) => unsafe {
                buffer.append_uninit(want, |spare: &mut [MaybeUninit<u8>]| tcp.read_uninit(spare))
            },
            None => match buffer.prepare(want) {
                Ok(mut area) => {
                    let read = self.transport.read(&mut area);
                    drop(area);
                    if let Ok(k) = read {
                        buffer.commit(k);
                    }
                    Ok(read)
                }
                Err(e) => Err(e),
            },
        };
        let n = match read {
            Ok(Ok(0)) => {
                self.on_read_error(handle, consumer, Error::Eof);
                return Some(Step::Finished);
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == io::ErrorKind::WouldBlock => return Some(Step::NeedInput),
            Ok(Err(e)) => {
                self.on_read_error(handle, consumer, Error::from(e));
                return Some(Step::Finished);
            }
            Err(e) => {
                // Beast: the dynamic buffer overflowed; the stream is failed, no close frame.
                let err = self.deliver(e);
                self.status = Status::Failed;
                self.complete_read(handle, Err(err));
                return Some(Step::Finished);
            }
        };
        self.note_activity();
        {
            let mut fresh = buffer.last_mut(n);
            if let Some(key) = frame.mask {
                self.rd_phase = apply_mask(&mut fresh, key, self.rd_phase);
            }
            if self.rd_text {
                if let Err(e) = self.utf8.feed(&fresh) {
                    drop(fresh);
                    buffer.drop_last(n);
                    self.fail_protocol(consumer, e);
                    return Some(Step::Finished);
                }
            }
        }
        Some(self.payload_delivered(handle, consumer, n))
    }
}
