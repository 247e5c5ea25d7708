//! Close codes and close reasons (RFC 6455 §5.5.1, §7.4): parsing the payload of a received
//! close frame and building the payload of one we send.

use crate::{ArgumentError, Error};
use std::fmt;

/// The largest close reason: a control payload holds 125 bytes, two of them the code.
pub const MAX_REASON_LEN: usize = 123;

/// A close status code (Beast's `close_code`), with Beast's named values.
///
/// Any `u16` can be held; [`is_valid`](Self::is_valid) tells whether it may appear in a
/// close frame.
///
/// ```
/// use rbeast::proto::close::CloseCode;
/// assert_eq!(CloseCode::NORMAL.0, 1000);
/// assert!(CloseCode::TRY_AGAIN_LATER.is_valid());
/// assert!(!CloseCode::NO_STATUS.is_valid());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// No code: a close frame with an empty payload (reserved, never on the wire).
    pub const NONE: CloseCode = CloseCode(0);
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: a protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNKNOWN_DATA: CloseCode = CloseCode(1003);
    /// 1004: reserved.
    pub const RESERVED1: CloseCode = CloseCode(1004);
    /// 1005: reserved, "no status code was present"; never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reserved, "closed abnormally"; never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (for instance text that is not UTF-8).
    pub const BAD_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_ERROR: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const NEEDS_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy received an invalid response upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: reserved, "TLS handshake failure"; never sent.
    pub const RESERVED3: CloseCode = CloseCode(1015);

    /// True when the code may appear in a close frame: 1000–1003, 1007–1014 and 3000–4999.
    ///
    /// Beast accepts every value from 3000 up; RFC 6455 §7.4.2 leaves 5000 and above
    /// undefined, and rbeast rejects them.
    ///
    /// ```
    /// use rbeast::proto::close::CloseCode;
    /// assert!(CloseCode(4999).is_valid());
    /// assert!(!CloseCode(5000).is_valid());
    /// assert!(!CloseCode(2999).is_valid());
    /// ```
    #[inline]
    pub const fn is_valid(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

impl From<CloseCode> for u16 {
    fn from(c: CloseCode) -> Self {
        c.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The code and reason of a close frame (Beast's `close_reason`). The reason is UTF-8 of at
/// most [`MAX_REASON_LEN`] bytes, stored inline (no allocation).
///
/// The default value has the code [`CloseCode::NONE`]: a close frame with an empty payload.
///
/// ```
/// use rbeast::proto::close::{CloseCode, CloseReason};
/// let cr = CloseReason::with_reason(CloseCode::GOING_AWAY, "bye").unwrap();
/// assert_eq!((cr.code, cr.reason()), (CloseCode::GOING_AWAY, "bye"));
/// assert!(cr.is_set());
/// assert!(!CloseReason::default().is_set());
/// ```
#[derive(Clone, Copy)]
pub struct CloseReason {
    /// The close code; [`CloseCode::NONE`] when there is none.
    pub code: CloseCode,
    reason: [u8; MAX_REASON_LEN],
    reason_len: u8,
}

impl CloseReason {
    /// A close reason with `code` and no text.
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// assert_eq!(CloseReason::new(CloseCode::NORMAL).reason(), "");
    /// ```
    pub const fn new(code: CloseCode) -> Self {
        CloseReason {
            code,
            reason: [0; MAX_REASON_LEN],
            reason_len: 0,
        }
    }

    /// A close reason with `code` and the text `reason`, or [`Error::InvalidArgument`] when
    /// the text is longer than [`MAX_REASON_LEN`] bytes (Beast throws `length_error`).
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// assert!(CloseReason::with_reason(CloseCode::NORMAL, &"x".repeat(123)).is_ok());
    /// assert!(CloseReason::with_reason(CloseCode::NORMAL, &"x".repeat(124)).is_err());
    /// ```
    pub fn with_reason(code: CloseCode, reason: &str) -> Result<Self, Error> {
        if reason.len() > MAX_REASON_LEN {
            return Err(Error::InvalidArgument(ArgumentError::CloseReasonTooLong));
        }
        let mut cr = CloseReason::new(code);
        cr.reason[..reason.len()].copy_from_slice(reason.as_bytes());
        cr.reason_len = reason.len() as u8;
        Ok(cr)
    }

    /// A close reason with the text `reason` and the code [`CloseCode::NORMAL`], as Beast's
    /// constructor from a string.
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// let cr = CloseReason::from_reason("done").unwrap();
    /// assert_eq!((cr.code, cr.reason()), (CloseCode::NORMAL, "done"));
    /// ```
    pub fn from_reason(reason: &str) -> Result<Self, Error> {
        CloseReason::with_reason(CloseCode::NORMAL, reason)
    }

    /// The reason text.
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// assert_eq!(CloseReason::with_reason(CloseCode(4000), "é").unwrap().reason(), "é");
    /// ```
    pub fn reason(&self) -> &str {
        let bytes = &self.reason[..self.reason_len as usize];
        // Every constructor stores UTF-8 only; the fallback is never taken.
        core::str::from_utf8(bytes).unwrap_or_default()
    }

    /// True when there is a code (Beast's `operator bool`: `code != none`).
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// assert!(CloseReason::new(CloseCode::NORMAL).is_set());
    /// ```
    pub const fn is_set(&self) -> bool {
        self.code.0 != CloseCode::NONE.0
    }

    /// Parses the (unmasked) payload of a received close frame:
    /// empty → no code; one byte (or more than 125) → [`Error::BadCloseSize`]; a code that is
    /// not [valid](CloseCode::is_valid) → [`Error::BadCloseCode`]; a reason that is not UTF-8
    /// → [`Error::BadClosePayload`].
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// use rbeast::Error;
    /// let cr = CloseReason::parse(&[0x03, 0xE8, b'o', b'k']).unwrap();
    /// assert_eq!((cr.code, cr.reason()), (CloseCode::NORMAL, "ok"));
    /// assert_eq!(CloseReason::parse(&[]).unwrap().code, CloseCode::NONE);
    /// assert_eq!(CloseReason::parse(&[0x03]).unwrap_err(), Error::BadCloseSize);
    /// assert_eq!(CloseReason::parse(&[0x03, 0xED]).unwrap_err(), Error::BadCloseCode);
    /// ```
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        let (code, reason) = match payload {
            [] => return Ok(CloseReason::default()),
            [hi, lo, reason @ ..] if reason.len() <= MAX_REASON_LEN => {
                (CloseCode(u16::from_be_bytes([*hi, *lo])), reason)
            }
            _ => return Err(Error::BadCloseSize),
        };
        if !code.is_valid() {
            return Err(Error::BadCloseCode);
        }
        let reason = core::str::from_utf8(reason).map_err(|_| Error::BadClosePayload)?;
        CloseReason::with_reason(code, reason)
    }

    /// Checks that this reason may be sent: no code and no text (an empty close frame), or a
    /// [valid](CloseCode::is_valid) code. Otherwise [`Error::InvalidArgument`]; Beast sends
    /// any code unchecked.
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// assert!(CloseReason::new(CloseCode::NORMAL).validate_for_send().is_ok());
    /// assert!(CloseReason::default().validate_for_send().is_ok());
    /// assert!(CloseReason::new(CloseCode::NO_STATUS).validate_for_send().is_err());
    /// ```
    pub fn validate_for_send(&self) -> Result<(), Error> {
        if !self.is_set() {
            if self.reason_len != 0 {
                return Err(Error::InvalidArgument(
                    ArgumentError::CloseReasonWithoutCode,
                ));
            }
            return Ok(());
        }
        if !self.code.is_valid() {
            return Err(Error::InvalidArgument(ArgumentError::CloseCodeNotSendable));
        }
        Ok(())
    }

    /// Writes the payload of the close frame we send into `out` and returns its length:
    /// nothing when there is no code, else the code (big-endian) and the reason. Fails as
    /// [`validate_for_send`](Self::validate_for_send) does.
    ///
    /// ```
    /// use rbeast::proto::close::{CloseCode, CloseReason};
    /// let mut out = [0u8; 125];
    /// let n = CloseReason::with_reason(CloseCode::NORMAL, "ok").unwrap().encode(&mut out).unwrap();
    /// assert_eq!(&out[..n], &[0x03, 0xE8, b'o', b'k']);
    /// ```
    pub fn encode(&self, out: &mut [u8; 125]) -> Result<usize, Error> {
        self.validate_for_send()?;
        if !self.is_set() {
            return Ok(0);
        }
        let n = self.reason_len as usize;
        out[..2].copy_from_slice(&self.code.0.to_be_bytes());
        out[2..2 + n].copy_from_slice(&self.reason[..n]);
        Ok(2 + n)
    }
}

impl Default for CloseReason {
    fn default() -> Self {
        CloseReason::new(CloseCode::NONE)
    }
}

impl From<CloseCode> for CloseReason {
    fn from(code: CloseCode) -> Self {
        CloseReason::new(code)
    }
}

impl PartialEq for CloseReason {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.reason() == other.reason()
    }
}

impl Eq for CloseReason {}

impl fmt::Debug for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseReason")
            .field("code", &self.code)
            .field("reason", &self.reason())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_table() {
        for v in 0..=u16::MAX {
            let expect = (1000..=1003).contains(&v)
                || (1007..=1014).contains(&v)
                || (3000..=4999).contains(&v);
            assert_eq!(CloseCode(v).is_valid(), expect, "code {v}");
        }
        for c in [
            CloseCode::NONE,
            CloseCode::RESERVED1,
            CloseCode::NO_STATUS,
            CloseCode::ABNORMAL,
            CloseCode::RESERVED3,
            CloseCode(999),
            CloseCode(1016),
            CloseCode(2999),
            CloseCode(5000),
            CloseCode(u16::MAX),
        ] {
            assert!(!c.is_valid(), "{c}");
        }
        for c in [
            CloseCode::NORMAL,
            CloseCode::GOING_AWAY,
            CloseCode::PROTOCOL_ERROR,
            CloseCode::UNKNOWN_DATA,
            CloseCode::BAD_PAYLOAD,
            CloseCode::POLICY_ERROR,
            CloseCode::TOO_BIG,
            CloseCode::NEEDS_EXTENSION,
            CloseCode::INTERNAL_ERROR,
            CloseCode::SERVICE_RESTART,
            CloseCode::TRY_AGAIN_LATER,
            CloseCode::BAD_GATEWAY,
            CloseCode(3000),
            CloseCode(4999),
        ] {
            assert!(c.is_valid(), "{c}");
        }
    }

    #[test]
    fn parse_rules_and_close_codes() {
        let cases: &[(&[u8], Error)] = &[
            (&[0x03], Error::BadCloseSize),
            (&[0x00, 0x00], Error::BadCloseCode),
            (&[0x03, 0xE7], Error::BadCloseCode),       // 999
            (&[0x03, 0xEC], Error::BadCloseCode),       // 1004
            (&[0x03, 0xED], Error::BadCloseCode),       // 1005
            (&[0x03, 0xEE], Error::BadCloseCode),       // 1006
            (&[0x03, 0xF7], Error::BadCloseCode),       // 1015
            (&[0x0B, 0xB7], Error::BadCloseCode),       // 2999
            (&[0x13, 0x88], Error::BadCloseCode),       // 5000
            (&[0x03, 0xED, 0xFF], Error::BadCloseCode), // code checked before the reason
            (&[0x03, 0xE8, 0xFF], Error::BadClosePayload),
            (&[0x03, 0xE8, 0xED, 0xA0, 0x80], Error::BadClosePayload), // surrogate
            (&[0x03, 0xE8, 0xC3], Error::BadClosePayload),             // truncated
        ];
        for (payload, err) in cases {
            let got = CloseReason::parse(payload).unwrap_err();
            assert_eq!(&got, err, "{payload:02x?}");
            assert_eq!(got.close_code(), Some(1002));
        }
        let too_long = [0x41u8; 126];
        assert_eq!(CloseReason::parse(&too_long), Err(Error::BadCloseSize));
    }

    #[test]
    fn parse_accepts_valid_payloads() {
        assert_eq!(CloseReason::parse(&[]).unwrap(), CloseReason::default());
        let cr = CloseReason::parse(&[0x03, 0xF6]).unwrap();
        assert_eq!((cr.code, cr.reason()), (CloseCode::BAD_GATEWAY, ""));
        let mut payload = vec![0x0F, 0xA0]; // 4000
        payload.extend_from_slice("κόσμε".as_bytes());
        let cr = CloseReason::parse(&payload).unwrap();
        assert_eq!((cr.code, cr.reason()), (CloseCode(4000), "κόσμε"));
        let mut max = vec![0x03, 0xE8];
        max.extend(std::iter::repeat_n(b'a', MAX_REASON_LEN));
        assert_eq!(CloseReason::parse(&max).unwrap().reason().len(), 123);
    }

    #[test]
    fn encode_round_trips_and_validates() {
        let mut out = [0u8; 125];
        assert_eq!(CloseReason::default().encode(&mut out), Ok(0));
        let cr = CloseReason::with_reason(CloseCode(3001), &"z".repeat(123)).unwrap();
        let n = cr.encode(&mut out).unwrap();
        assert_eq!(n, 125);
        assert_eq!(CloseReason::parse(&out[..n]).unwrap(), cr);
        for bad in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let e = CloseReason::new(CloseCode(bad)).encode(&mut out);
            let expected = Error::InvalidArgument(ArgumentError::CloseCodeNotSendable);
            assert_eq!(e, Err(expected), "{bad}");
        }
        let no_code_with_text = CloseReason::with_reason(CloseCode::NONE, "x").unwrap();
        assert_eq!(
            no_code_with_text.encode(&mut out),
            Err(Error::InvalidArgument(
                ArgumentError::CloseReasonWithoutCode
            ))
        );
        assert_eq!(
            CloseReason::from_reason(&"x".repeat(124)),
            Err(Error::InvalidArgument(ArgumentError::CloseReasonTooLong))
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(CloseReason::from(CloseCode::TOO_BIG).code.0, 1009);
        assert_eq!(u16::from(CloseCode::from(1011)), 1011);
        assert_eq!(format!("{}", CloseCode::NORMAL), "1000");
        let dbg = format!("{:?}", CloseReason::from_reason("hi").unwrap());
        assert!(dbg.contains("1000") && dbg.contains("hi"), "{dbg}");
    }
}
