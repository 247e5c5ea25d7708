//! The corked output: when it is flushed (at the end of the loop turn, held back one
//! more turn, or at once past its high-water mark) and what a flush lets advance.

use super::{Core, Status};
use crate::net::{Handle, Transport};
use crate::Error;

/// Turns in a row the output may be held back while buffered messages are answered.
const MAX_HOLDS: u32 = 64;

impl<T: Transport> Core<T> {
    /// True when the output should be flushed at the end of this loop turn.
    pub(crate) fn take_flush_request(&mut self) -> bool {
        if self.out.is_empty() || self.flush_scheduled || self.flush_blocked {
            return false;
        }
        self.flush_scheduled = true;
        true
    }

    /// True when the output is at or past its high-water mark (to be written at once).
    pub(crate) fn output_full(&self) -> bool {
        self.out.len() >= self.opts.high_water()
    }

    /// True when written output may let something advance: a write parked for room, a
    /// handshake reply or a teardown waiting for the output to go, a control frame waiting
    /// for room for its reply, or a status that changed (a failed write). An open stream
    /// with none of these has nothing to do after a flush.
    pub(crate) fn waits_for_output(&self) -> bool {
        self.write_op.is_some()
            || self.hs_op.is_some()
            || self.teardown.is_some()
            || self.status != Status::Open
            || self.pending_control.is_some()
    }

    /// Decides, at the end of a turn, whether to hold the output back one more turn: a read
    /// completed and more input is already buffered, so the application is about to reply
    /// to the next message too and both replies can leave in one write. Bounded by the
    /// high-water mark and by `MAX_HOLDS` turns in a row.
    pub(crate) fn hold_output(&mut self) -> bool {
        let hold = self.read_done
            && !self.rd_buf.is_empty()
            && !self.output_full()
            && self.holds < MAX_HOLDS;
        self.read_done = false;
        self.holds = if hold { self.holds + 1 } else { 0 };
        hold
    }

    /// Writes queued output now. Returns true when something was written.
    pub(crate) fn flush_now(&mut self, handle: &Handle) -> bool {
        self.flush_scheduled = false;
        if self.out.is_empty() {
            self.flush_blocked = false;
            return false;
        }
        let before = self.out.len();
        match self.out.flush(&mut self.transport) {
            Ok(done) => self.flush_blocked = !done,
            Err(e) => {
                self.flush_blocked = false;
                self.fail_all(handle, Error::from(e));
                return true;
            }
        }
        self.out.len() != before
    }
}
