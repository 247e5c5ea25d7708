//! Readiness of an I/O object, as reported by the reactor.

use std::ops::BitOr;

/// A set of readiness flags for an I/O object.
///
/// Readiness is edge-triggered: an object learns it became readable or writable once, and
/// keeps that knowledge until an operation sees `WouldBlock` (or a short read).
///
/// ```
/// use rbeast::net::Readiness;
/// let r = Readiness::READABLE | Readiness::WRITABLE;
/// assert!(r.is_readable() && r.is_writable());
/// assert!(!Readiness::EMPTY.is_readable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness(u8);

impl Readiness {
    /// No readiness.
    pub const EMPTY: Readiness = Readiness(0);
    /// Data (or end of stream, or an error) can be read.
    pub const READABLE: Readiness = Readiness(1);
    /// Data can be written (or a write would report an error).
    pub const WRITABLE: Readiness = Readiness(2);
    /// The peer finished sending (end of stream) or the connection failed: reads will not
    /// block any more.
    pub const READ_CLOSED: Readiness = Readiness(4);

    /// True when the readable flag is set.
    ///
    /// ```
    /// assert!(rbeast::net::Readiness::READABLE.is_readable());
    /// ```
    pub fn is_readable(self) -> bool {
        self.0 & 1 != 0
    }

    /// True when the writable flag is set.
    ///
    /// ```
    /// assert!(rbeast::net::Readiness::WRITABLE.is_writable());
    /// ```
    pub fn is_writable(self) -> bool {
        self.0 & 2 != 0
    }

    /// True when the read-closed flag is set.
    ///
    /// ```
    /// assert!(rbeast::net::Readiness::READ_CLOSED.is_read_closed());
    /// ```
    pub fn is_read_closed(self) -> bool {
        self.0 & 4 != 0
    }

    /// True when no flag is set.
    ///
    /// ```
    /// assert!(rbeast::net::Readiness::EMPTY.is_empty());
    /// ```
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub(crate) fn from_event(event: &mio::event::Event) -> Readiness {
        let mut r = Readiness::EMPTY;
        // Errors and hang-ups wake both directions: the next operation discovers them.
        let failed = event.is_error();
        if event.is_readable() || event.is_read_closed() || failed {
            r = r | Readiness::READABLE;
        }
        if event.is_writable() || event.is_write_closed() || failed {
            r = r | Readiness::WRITABLE;
        }
        if event.is_read_closed() || failed {
            r = r | Readiness::READ_CLOSED;
        }
        r
    }
}

impl BitOr for Readiness {
    type Output = Readiness;
    fn bitor(self, rhs: Readiness) -> Readiness {
        Readiness(self.0 | rhs.0)
    }
}
