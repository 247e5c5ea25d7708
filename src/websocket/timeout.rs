//! The stream's timeouts (Beast's `stream_base::timeout`): one internal timer per stream,
//! bounding the handshake, the closing handshake and idleness, with keep-alive pings.

use std::time::{Duration, Instant};

use super::core::{Core, Status};
use crate::net::{Handle, InternalTimer, Transport};
use crate::proto::frame::Opcode;
use crate::{Error, Role};

/// The timeout settings of a stream (Beast's `stream_base::timeout`). `None` disables a
/// limit. The default disables everything, as Beast's does.
///
/// ```
/// use std::time::Duration;
/// use rbeast::websocket::Timeout;
/// let t = Timeout::suggested(rbeast::Role::Server);
/// assert_eq!(t.handshake_timeout, Some(Duration::from_secs(30)));
/// assert_eq!(t.idle_timeout, Some(Duration::from_secs(300)));
/// assert!(t.keep_alive_pings);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timeout {
    /// Bounds the opening handshake (accept or handshake) and the closing handshake.
    pub handshake_timeout: Option<Duration>,
    /// Bounds the time with nothing received while the stream is open. The expiry closes
    /// the transport whether or not a read is pending; the pending operation, or else the
    /// next one started, gets [`Error::Timeout`].
    pub idle_timeout: Option<Duration>,
    /// Send a ping when half the idle time has passed with nothing received, and time out
    /// only if the next half passes too.
    pub keep_alive_pings: bool,
}

impl Timeout {
    /// Beast's suggested settings: for clients a 30 s handshake bound and nothing else; for
    /// servers a 30 s handshake bound, a 300 s idle bound and keep-alive pings.
    ///
    /// ```
    /// let t = rbeast::websocket::Timeout::suggested(rbeast::Role::Client);
    /// assert_eq!(t.idle_timeout, None);
    /// ```
    pub fn suggested(role: Role) -> Timeout {
        match role {
            Role::Client => Timeout {
                handshake_timeout: Some(Duration::from_secs(30)),
                idle_timeout: None,
                keep_alive_pings: false,
            },
            Role::Server => Timeout {
                handshake_timeout: Some(Duration::from_secs(30)),
                idle_timeout: Some(Duration::from_secs(300)),
                keep_alive_pings: true,
            },
        }
    }
}

/// Which bound the timer currently enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    #[default]
    Off,
    Handshake,
    Idle,
    Closing,
}

/// The timer state of a stream.
#[derive(Default)]
pub(crate) struct Timers {
    pub(crate) settings: Timeout,
    pub(crate) timer: Option<InternalTimer>,
    phase: Phase,
    /// When the current idle period started: later than when the timer was armed if the
    /// period restarted since (the timer is moved only when it fires, see
    /// [`Core::arm_idle`]).
    idle_start: Option<Instant>,
    /// The timer is pending at an expiry set in the idle phase: no later than the end of an
    /// idle period starting now.
    idle_armed: bool,
    /// Bytes arrived since the idle timer was last armed.
    activity: bool,
    /// The keep-alive ping of this idle period was sent.
    pinged: bool,
}

impl Timers {
    /// The wait from the start of an idle period to the timer's first expiry in it: the idle
    /// timeout, or half of it when keep-alive pings are on (the ping goes out then).
    fn first_idle_wait(&self) -> Option<Duration> {
        let settings = self.settings;
        settings.idle_timeout.map(|idle| {
            if settings.keep_alive_pings {
                idle / 2
            } else {
                idle
            }
        })
    }
}

impl<T: Transport> Core<T> {
    /// Arms the timer for the phase the stream's status calls for (Beast's `update_timer`).
    /// Inlined: on every read the phase is unchanged and nothing else happens.
    #[inline]
    pub(crate) fn update_timer(&mut self) {
        let phase = match self.status {
            Status::Handshake if self.hs_op.is_some() => Phase::Handshake,
            Status::Handshake => Phase::Off,
            Status::Open => Phase::Idle,
            Status::Closing => Phase::Closing,
            Status::Closed | Status::Failed => Phase::Off,
        };
        if phase != self.timers.phase {
            self.enter_phase(phase);
        }
    }

    /// Arms the timer for a phase the stream has just entered.
    fn enter_phase(&mut self, phase: Phase) {
        self.timers.phase = phase;
        match phase {
            Phase::Off => self.arm(None),
            Phase::Handshake | Phase::Closing => {
                self.arm(self.timers.settings.handshake_timeout);
            }
            Phase::Idle => self.arm_idle(),
        }
    }

    /// Applies new settings: the current phase is armed again with them.
    pub(crate) fn restart_timer(&mut self) {
        self.timers.phase = Phase::Off;
        self.arm(None);
        self.update_timer();
    }

    /// Restarts the idle period (at each read and on each received ping, as Beast). A
    /// period that ends later than the one the timer is armed for only notes when it
    /// started: the timer, when it fires, computes the later deadline and is armed again for
    /// it. So the read of every message does not touch the context's timers.
    #[inline]
    pub(crate) fn arm_idle(&mut self) {
        if self.timers.phase != Phase::Idle {
            return;
        }
        self.timers.activity = false;
        self.timers.pinged = false;
        if let (true, Some(timer)) = (self.timers.idle_armed, &self.timers.timer) {
            self.timers.idle_start = Some(timer.now());
            return;
        }
        self.arm_idle_timer();
    }

    /// Arms the timer for the first expiry of an idle period starting now.
    fn arm_idle_timer(&mut self) {
        let first = self.timers.first_idle_wait();
        self.arm(first);
        self.timers.idle_armed = first.is_some();
    }

    /// Notes that bytes arrived.
    pub(crate) fn note_activity(&mut self) {
        self.timers.activity = true;
    }

    fn arm(&mut self, after: Option<Duration>) {
        if let Some(timer) = &self.timers.timer {
            let now = timer.now();
            timer.arm(after.map(|d| now + d));
            self.timers.idle_start = Some(now);
            self.timers.idle_armed = false;
        }
    }

    /// The timer expired.
    pub(crate) fn on_timer(&mut self, handle: &Handle) {
        // The timer is no longer armed.
        let idle_armed = std::mem::take(&mut self.timers.idle_armed);
        let wait = self.timers.first_idle_wait();
        if let (true, Some(start), Some(wait), Some(timer)) =
            (idle_armed, self.timers.idle_start, wait, &self.timers.timer)
        {
            let deadline = start + wait;
            if deadline > timer.now() {
                // The idle period restarted since the timer was armed: not expired yet.
                timer.arm(Some(deadline));
                self.timers.idle_armed = true;
                return;
            }
        }
        match self.timers.phase {
            Phase::Off => {}
            Phase::Handshake | Phase::Closing => self.time_out(handle),
            Phase::Idle => {
                let settings = self.timers.settings;
                if self.timers.activity {
                    self.arm_idle();
                } else if settings.keep_alive_pings && !self.timers.pinged {
                    if self.status == Status::Open && !self.wr_close {
                        self.emit_control(Opcode::Ping, b"");
                    }
                    self.timers.pinged = true;
                    // With pings on, the first wait is half the idle timeout: the second half.
                    self.arm_idle_timer();
                } else {
                    self.time_out(handle);
                }
            }
        }
    }

    /// Beast's `time_out`: the transport is closed, no close frame is sent; the first
    /// operation to see it gets `Error::Timeout`, the others `OperationAborted`.
    fn time_out(&mut self, handle: &Handle) {
        self.timers.phase = Phase::Off;
        self.transport.close();
        self.fail_all(handle, Error::Timeout);
        self.status = Status::Closed;
    }
}
