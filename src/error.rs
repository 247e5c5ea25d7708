//! The one error type of the crate.
//!
//! Every operation reports failure through [`Error`]. The variants follow Beast's error codes
//! (`boost::beast::websocket::error`, `net::error::operation_aborted`, `beast::error::timeout`)
//! so that code ported from Beast can match on the same conditions, plus a few bounds that
//! rbeast adds and names.

use std::fmt;
use std::io;
use std::sync::Arc;

/// A failure reported by an rbeast operation.
///
/// `Error` is cheap to clone (an I/O error is shared, not copied) and compares by meaning:
/// two [`Error::Io`] values are equal when their [`io::ErrorKind`] and OS error code match.
///
/// ```
/// use rbeast::Error;
/// let e = Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
/// assert!(e.is_io(std::io::ErrorKind::ConnectionReset));
/// assert_eq!(Error::BadOpcode.condition(), Some(rbeast::Condition::ProtocolViolation));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    // ---- the reactor and the transport ----
    /// The operation was cancelled, the object was closed, or the stream had already failed
    /// or closed when the operation looked (asio's `operation_aborted`).
    OperationAborted,
    /// An operation of the same kind is already outstanding on this object. Beast leaves this
    /// undefined; rbeast reports it to the new operation and leaves the first one running.
    AlreadyStarted,
    /// A timer bounding the operation expired (Beast's `beast::error::timeout`).
    Timeout,
    /// The peer closed the connection at the transport level (asio's `eof`).
    Eof,
    /// An I/O error from the operating system or the next layer.
    Io(Arc<io::Error>),
    /// A failure injected by [`test::FailCount`](crate::test::FailCount).
    TestFailure,
    /// The cross-thread queue of an [`Executor`](crate::net::Executor) is full.
    PostQueueFull,
    /// The context that owns the object has been dropped.
    ContextGone,
    /// A buffer would have to grow past its `max_size` (Beast's `buffer_overflow`). For a
    /// WebSocket read the stream is failed afterwards, as in Beast.
    BufferOverflow,
    /// An argument or option is out of range (Beast throws `std::invalid_argument`);
    /// [`ArgumentError`] says which.
    InvalidArgument(ArgumentError),

    // ---- WebSocket: graceful close and size limits ----
    /// The WebSocket connection was closed with the closing handshake (Beast's `closed`).
    Closed,
    /// A message is larger than `read_message_max`, before or after inflation (close code 1009).
    MessageTooBig,
    /// The queued outgoing bytes of a write queue reached their bound.
    WriteQueueFull,

    // ---- WebSocket: the HTTP upgrade handshake ----
    /// The HTTP header of the handshake is larger than the configured limit (Beast's
    /// `http::error::buffer_overflow`).
    HeaderTooLarge,
    /// The handshake bytes are not valid HTTP.
    BadHttp,
    /// The request or response is not HTTP/1.1.
    BadHttpVersion,
    /// The upgrade request's method is not GET.
    BadMethod,
    /// The upgrade request has no Host field.
    NoHost,
    /// The Connection field is missing.
    NoConnection,
    /// The Connection field has no `upgrade` token.
    NoConnectionUpgrade,
    /// The Upgrade field is missing.
    NoUpgrade,
    /// The Upgrade field has no `websocket` token.
    NoUpgradeWebsocket,
    /// The Sec-WebSocket-Key field is missing.
    NoSecKey,
    /// The Sec-WebSocket-Key field is invalid.
    BadSecKey,
    /// The Sec-WebSocket-Version field is missing.
    NoSecVersion,
    /// The Sec-WebSocket-Version field is not 13.
    BadSecVersion,
    /// The response has no Sec-WebSocket-Accept field.
    NoSecAccept,
    /// The response's Sec-WebSocket-Accept does not match the key sent.
    BadSecAccept,
    /// The server answered the upgrade with a status other than 101.
    UpgradeDeclined,
    /// The server's permessage-deflate reply is not one our offer allowed (beyond Beast).
    BadExtensionReply,
    /// The server chose a subprotocol the client did not offer (beyond Beast).
    BadSubprotocol,
    /// The server's accept hook rejected the upgrade with a custom response (beyond Beast).
    Rejected,

    // ---- WebSocket: protocol violations (close code 1002 unless noted) ----
    /// A reserved opcode was received.
    BadOpcode,
    /// A text or binary frame arrived while a continuation was expected.
    BadDataFrame,
    /// A continuation frame arrived with no message in progress.
    BadContinuation,
    /// A reserved bit was set without an extension that defines it.
    BadReservedBits,
    /// A control frame was fragmented.
    BadControlFragment,
    /// A control frame's payload is larger than 125 bytes.
    BadControlSize,
    /// A server received an unmasked frame.
    BadUnmaskedFrame,
    /// A client received a masked frame.
    BadMaskedFrame,
    /// A frame length was not in its shortest form, or its 64-bit length has the top bit set.
    BadSize,
    /// A text message is not valid UTF-8 (close code 1007).
    BadFramePayload,
    /// A received close frame carries an invalid close code.
    BadCloseCode,
    /// A received close frame has a payload of exactly one byte.
    BadCloseSize,
    /// A received close frame's reason is not valid UTF-8.
    BadClosePayload,
    /// A compressed message could not be inflated (close code 1007; Beast sends none).
    BadDeflateData,

    // ---- TLS (the `tls` feature) ----
    /// The peer closed the connection without a TLS `close_notify` alert, so the end of the
    /// data cannot be told from a truncation attack (asio's `ssl::error::stream_truncated`).
    /// Many TLS peers close this way; after a completed WebSocket closing handshake it is
    /// usually harmless, as in Beast.
    StreamTruncated,
    /// A TLS failure: the handshake failed, the peer sent a fatal alert, its bytes are not
    /// valid TLS, or a configuration is unusable. [`TlsError::kind`] tells which.
    Tls(TlsError),
}

/// Which argument or option was out of range (see [`Error::InvalidArgument`]).
///
/// Beast throws `std::invalid_argument` with a message; rbeast names each case so that it
/// can be matched, and [`Display`](fmt::Display) gives the message.
///
/// ```
/// use rbeast::proto::close::{CloseCode, CloseReason};
/// use rbeast::{ArgumentError, Error};
/// let e = CloseReason::with_reason(CloseCode::NORMAL, &"x".repeat(124)).unwrap_err();
/// assert_eq!(e, Error::InvalidArgument(ArgumentError::CloseReasonTooLong));
/// assert!(e.to_string().contains("123 bytes"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArgumentError {
    /// `write_buffer_bytes` is below Beast's minimum of 8.
    WriteBufferBytesTooSmall,
    /// A ping or pong payload is longer than 125 bytes.
    ControlPayloadTooLong,
    /// A close reason is longer than 123 bytes.
    CloseReasonTooLong,
    /// A close reason has text but no close code.
    CloseReasonWithoutCode,
    /// A close code that must not be sent: reserved, undefined or out of range.
    CloseCodeNotSendable,
    /// permessage-deflate `server_max_window_bits` is outside 9..=15.
    ServerMaxWindowBits,
    /// permessage-deflate `client_max_window_bits` is outside 9..=15.
    ClientMaxWindowBits,
    /// permessage-deflate `comp_level` is above 9.
    CompLevel,
    /// permessage-deflate `mem_level` is outside 1..=9.
    MemLevel,
    /// A deflate call was given less output room than `MIN_DEFLATE_CHUNK`.
    DeflateChunkTooSmall,
    /// An inflate call was given no room to inflate into.
    NoRoomToInflate,
    /// The handshake's request target cannot be sent as a URI.
    HandshakeTarget,
    /// The handshake's host cannot be sent in a Host field.
    HandshakeHost,
    /// The handshake's key cannot be sent in a Sec-WebSocket-Key field.
    HandshakeKey,
    /// The permessage-deflate offer cannot be sent in a Sec-WebSocket-Extensions field.
    DeflateOffer,
    /// A subprotocol is not an HTTP token, so it cannot be offered.
    Subprotocol,
    /// The server's accept hook chose a subprotocol the client did not offer.
    SubprotocolNotOffered,
    /// A handshake parser was fed again after it had finished.
    ParserFinished,
    /// A TLS handshake was started on a stream whose handshake was already done.
    TlsHandshakeDone,
}

impl ArgumentError {
    /// The message Display shows after "invalid argument: ".
    ///
    /// ```
    /// assert_eq!(
    ///     rbeast::ArgumentError::ControlPayloadTooLong.message(),
    ///     "control payload over 125 bytes"
    /// );
    /// ```
    pub fn message(self) -> &'static str {
        use ArgumentError::*;
        match self {
            WriteBufferBytesTooSmall => "write_buffer_bytes must be at least 8",
            ControlPayloadTooLong => "control payload over 125 bytes",
            CloseReasonTooLong => "close reason longer than 123 bytes",
            CloseReasonWithoutCode => "a close reason needs a close code",
            CloseCodeNotSendable => "reserved or undefined close code",
            ServerMaxWindowBits => "invalid server_max_window_bits",
            ClientMaxWindowBits => "invalid client_max_window_bits",
            CompLevel => "invalid comp_level",
            MemLevel => "invalid mem_level",
            DeflateChunkTooSmall => "deflate chunk smaller than MIN_DEFLATE_CHUNK",
            NoRoomToInflate => "no room to inflate into",
            HandshakeTarget => "the request target cannot be sent",
            HandshakeHost => "the host cannot be sent",
            HandshakeKey => "the key cannot be sent",
            DeflateOffer => "the permessage-deflate offer cannot be sent",
            Subprotocol => "subprotocol is not a token",
            SubprotocolNotOffered => "the chosen subprotocol was not offered",
            ParserFinished => "the parser has already finished",
            TlsHandshakeDone => "the TLS handshake was already done",
        }
    }
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// What went wrong in a TLS connection or its configuration (see [`Error::Tls`]).
///
/// ```
/// use rbeast::{TlsError, TlsErrorKind};
/// let e = TlsError::new(TlsErrorKind::InvalidMessage, "not a TLS record");
/// assert_eq!(e.kind(), TlsErrorKind::InvalidMessage);
/// assert!(e.to_string().contains("not a TLS record"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The peer's bytes are not valid TLS (garbage instead of a ClientHello, a corrupt or
    /// oversized record, a message out of order).
    InvalidMessage,
    /// The peer sent a fatal alert (for example it rejected our certificate).
    AlertReceived,
    /// The peer's certificate could not be verified (untrusted, expired, wrong name) or
    /// none was presented.
    BadCertificate,
    /// The handshake failed: no protocol version or cipher suite in common, or the peer
    /// broke the handshake's rules.
    HandshakeFailure,
    /// A record failed authentication.
    DecryptError,
    /// A configuration or PEM input is unusable (no certificate, no key, a bad server name).
    Config,
    /// Any other TLS failure.
    Other,
}

/// A TLS failure: its [`TlsErrorKind`] and the TLS library's description. Cheap to clone;
/// compares by kind.
#[derive(Debug, Clone)]
pub struct TlsError(Arc<(TlsErrorKind, String)>);

impl TlsError {
    /// A failure of `kind` described by `detail`.
    ///
    /// ```
    /// let e = rbeast::TlsError::new(rbeast::TlsErrorKind::Config, "no private key");
    /// assert_eq!(e.detail(), "no private key");
    /// ```
    pub fn new(kind: TlsErrorKind, detail: impl Into<String>) -> TlsError {
        TlsError(Arc::new((kind, detail.into())))
    }

    /// The kind of failure.
    ///
    /// ```
    /// let e = rbeast::TlsError::new(rbeast::TlsErrorKind::Other, "x");
    /// assert_eq!(e.kind(), rbeast::TlsErrorKind::Other);
    /// ```
    pub fn kind(&self) -> TlsErrorKind {
        self.0 .0
    }

    /// The TLS library's description of the failure.
    ///
    /// ```
    /// let e = rbeast::TlsError::new(rbeast::TlsErrorKind::Other, "x");
    /// assert_eq!(e.detail(), "x");
    /// ```
    pub fn detail(&self) -> &str {
        &self.0 .1
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS {:?}: {}", self.kind(), self.detail())
    }
}

/// The error conditions of Beast (`websocket::condition`): groups of [`Error`] values.
///
/// ```
/// use rbeast::{Condition, Error};
/// assert_eq!(Error::NoHost.condition(), Some(Condition::HandshakeFailed));
/// assert_eq!(Error::Closed.condition(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// The WebSocket handshake failed.
    HandshakeFailed,
    /// A WebSocket protocol violation occurred.
    ProtocolViolation,
}

impl Error {
    /// The condition this error belongs to, as in Beast's `websocket::condition`.
    ///
    /// ```
    /// use rbeast::{Condition, Error};
    /// assert_eq!(Error::BadSize.condition(), Some(Condition::ProtocolViolation));
    /// ```
    pub fn condition(&self) -> Option<Condition> {
        use Error::*;
        match self {
            HeaderTooLarge | BadHttp | BadHttpVersion | BadMethod | NoHost | NoConnection
            | NoConnectionUpgrade | NoUpgrade | NoUpgradeWebsocket | NoSecKey | BadSecKey
            | NoSecVersion | BadSecVersion | NoSecAccept | BadSecAccept | UpgradeDeclined
            | BadExtensionReply | BadSubprotocol | Rejected => Some(Condition::HandshakeFailed),
            BadOpcode | BadDataFrame | BadContinuation | BadReservedBits | BadControlFragment
            | BadControlSize | BadUnmaskedFrame | BadMaskedFrame | BadSize | BadFramePayload
            | BadCloseCode | BadCloseSize | BadClosePayload | BadDeflateData => {
                Some(Condition::ProtocolViolation)
            }
            _ => None,
        }
    }

    /// The close code a WebSocket endpoint sends when it fails the connection because of
    /// this error, or `None` when no close frame is sent.
    ///
    /// ```
    /// use rbeast::Error;
    /// assert_eq!(Error::BadFramePayload.close_code(), Some(1007));
    /// assert_eq!(Error::MessageTooBig.close_code(), Some(1009));
    /// assert_eq!(Error::Timeout.close_code(), None);
    /// ```
    pub fn close_code(&self) -> Option<u16> {
        use Error::*;
        match self {
            MessageTooBig => Some(1009),
            BadFramePayload | BadDeflateData => Some(1007),
            BadOpcode | BadDataFrame | BadContinuation | BadReservedBits | BadControlFragment
            | BadControlSize | BadUnmaskedFrame | BadMaskedFrame | BadSize | BadCloseCode
            | BadCloseSize | BadClosePayload => Some(1002),
            _ => None,
        }
    }

    /// True when this is an [`Error::Io`] of the given kind.
    ///
    /// ```
    /// use rbeast::Error;
    /// let e = Error::from(std::io::ErrorKind::ConnectionRefused);
    /// assert!(e.is_io(std::io::ErrorKind::ConnectionRefused));
    /// ```
    pub fn is_io(&self, kind: io::ErrorKind) -> bool {
        matches!(self, Error::Io(e) if e.kind() == kind)
    }

    /// Beast's numeric value for WebSocket errors (category `boost.beast.websocket`), for
    /// logging parity with C++ peers; `None` for errors that are not in that category.
    ///
    /// ```
    /// assert_eq!(rbeast::Error::Closed.beast_code(), Some(1));
    /// assert_eq!(rbeast::Error::BadClosePayload.beast_code(), Some(33));
    /// ```
    pub fn beast_code(&self) -> Option<i32> {
        use Error::*;
        Some(match self {
            Closed => 1,
            BufferOverflow => 4,
            MessageTooBig => 6,
            BadHttpVersion => 7,
            BadMethod => 8,
            NoHost => 9,
            NoConnection => 10,
            NoConnectionUpgrade => 11,
            NoUpgrade => 12,
            NoUpgradeWebsocket => 13,
            NoSecKey => 14,
            BadSecKey => 15,
            NoSecVersion => 16,
            BadSecVersion => 17,
            NoSecAccept => 18,
            BadSecAccept => 19,
            UpgradeDeclined => 20,
            BadOpcode => 21,
            BadDataFrame => 22,
            BadContinuation => 23,
            BadReservedBits => 24,
            BadControlFragment => 25,
            BadControlSize => 26,
            BadUnmaskedFrame => 27,
            BadMaskedFrame => 28,
            BadSize => 29,
            BadFramePayload => 30,
            BadCloseCode => 31,
            BadCloseSize => 32,
            BadClosePayload => 33,
            _ => return None,
        })
    }
}

impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Error::Io(a), Error::Io(b)) => {
                a.kind() == b.kind() && a.raw_os_error() == b.raw_os_error()
            }
            (Error::InvalidArgument(a), Error::InvalidArgument(b)) => a == b,
            (Error::Tls(a), Error::Tls(b)) => a.kind() == b.kind(),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        let text = match self {
            OperationAborted => "the operation was aborted",
            AlreadyStarted => "an operation of this kind is already outstanding",
            Timeout => "the operation timed out",
            Eof => "end of stream",
            Io(e) => return write!(f, "I/O error: {e}"),
            TestFailure => "test failure",
            PostQueueFull => "the executor's cross-thread queue is full",
            ContextGone => "the I/O context has been dropped",
            BufferOverflow => "dynamic buffer overflow",
            InvalidArgument(what) => return write!(f, "invalid argument: {what}"),
            Closed => "The WebSocket stream was gracefully closed at both endpoints",
            MessageTooBig => "The WebSocket message exceeded the locally configured limit",
            WriteQueueFull => "the write queue is full",
            HeaderTooLarge => "the HTTP header of the handshake is too large",
            BadHttp => "the handshake is not valid HTTP",
            BadHttpVersion => "The WebSocket handshake was not HTTP/1.1",
            BadMethod => "The WebSocket handshake method was not GET",
            NoHost => "The WebSocket handshake Host field is missing",
            NoConnection => "The WebSocket handshake Connection field is missing",
            NoConnectionUpgrade => {
                "The WebSocket handshake Connection field is missing the upgrade token"
            }
            NoUpgrade => "The WebSocket handshake Upgrade field is missing",
            NoUpgradeWebsocket => {
                "The WebSocket handshake Upgrade field is missing the websocket token"
            }
            NoSecKey => "The WebSocket handshake Sec-WebSocket-Key field is missing",
            BadSecKey => "The WebSocket handshake Sec-WebSocket-Key field is invalid",
            NoSecVersion => "The WebSocket handshake Sec-WebSocket-Version field is missing",
            BadSecVersion => "The WebSocket handshake Sec-WebSocket-Version field is invalid",
            NoSecAccept => "The WebSocket handshake Sec-WebSocket-Accept field is missing",
            BadSecAccept => "The WebSocket handshake Sec-WebSocket-Accept field is invalid",
            UpgradeDeclined => "The WebSocket handshake was declined by the remote peer",
            BadExtensionReply => "The server's permessage-deflate reply was not offered",
            BadSubprotocol => "The server chose a subprotocol that was not offered",
            Rejected => "The WebSocket upgrade was rejected by the accept hook",
            BadOpcode => "The WebSocket frame contained an illegal opcode",
            BadDataFrame => "The WebSocket data frame was unexpected",
            BadContinuation => "The WebSocket continuation frame was unexpected",
            BadReservedBits => "The WebSocket frame contained illegal reserved bits",
            BadControlFragment => "The WebSocket control frame was fragmented",
            BadControlSize => "The WebSocket control frame size was invalid",
            BadUnmaskedFrame => "The WebSocket frame was unmasked",
            BadMaskedFrame => "The WebSocket frame was masked",
            BadSize => "The WebSocket frame size was not canonical",
            BadFramePayload => "The WebSocket frame payload was not valid utf8",
            BadCloseCode => "The WebSocket close frame contained an illegal code",
            BadCloseSize => "The WebSocket close frame payload size was invalid",
            BadClosePayload => "The WebSocket close frame payload was not valid utf8",
            BadDeflateData => "The WebSocket compressed message could not be inflated",
            StreamTruncated => "the TLS peer closed the connection without close_notify",
            Tls(e) => return e.fmt(f),
        };
        f.write_str(text)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Carries an [`Error`] through an `io::Error` (for example a failure injected into a
/// transport, whose methods return `io::Result`); `From<io::Error>` unwraps it again.
#[derive(Debug)]
struct Carried(Error);

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Carried {}

/// Wraps `e` in an `io::Error` that converts back to `e`.
pub(crate) fn io_error_from(e: Error) -> io::Error {
    io::Error::other(Carried(e))
}

impl From<io::Error> for Error {
    /// Converts an I/O error; `UnexpectedEof` becomes [`Error::Eof`], and an error that
    /// carries an rbeast error (a test failure injected into a transport, say) becomes that
    /// error again.
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Error::Eof;
        }
        if let Some(carried) = e.get_ref().and_then(|r| r.downcast_ref::<Carried>()) {
            return carried.0.clone();
        }
        Error::Io(Arc::new(e))
    }
}

impl From<io::ErrorKind> for Error {
    fn from(kind: io::ErrorKind) -> Self {
        Error::from(io::Error::from(kind))
    }
}

/// The result of an rbeast operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_compare_by_kind() {
        let a = Error::from(io::ErrorKind::ConnectionReset);
        let b = Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(a, b);
        assert_ne!(a, Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(Error::from(io::ErrorKind::UnexpectedEof), Error::Eof);
        assert_eq!(
            Error::from(io_error_from(Error::TestFailure)),
            Error::TestFailure
        );
    }

    #[test]
    fn codes_match_beast() {
        assert_eq!(Error::BadUnmaskedFrame.close_code(), Some(1002));
        assert_eq!(Error::BadSecVersion.beast_code(), Some(17));
        assert_eq!(Error::OperationAborted.beast_code(), None);
        assert_eq!(Error::Closed.close_code(), None);
        // TLS errors belong to asio's SSL category, not to Beast's WebSocket one.
        assert_eq!(Error::StreamTruncated.beast_code(), None);
        assert_eq!(Error::StreamTruncated.condition(), None);
        assert_eq!(Error::StreamTruncated.close_code(), None);
    }

    #[test]
    fn tls_errors_compare_by_kind() {
        let a = Error::Tls(TlsError::new(TlsErrorKind::InvalidMessage, "a"));
        let b = Error::Tls(TlsError::new(TlsErrorKind::InvalidMessage, "b"));
        assert_eq!(a, b);
        assert_ne!(
            a,
            Error::Tls(TlsError::new(TlsErrorKind::AlertReceived, "a"))
        );
        assert_ne!(a, Error::StreamTruncated);
        assert!(a.to_string().contains("InvalidMessage"));
    }

    #[test]
    fn error_stays_small() {
        assert_eq!(std::mem::size_of::<Error>(), 16);
        assert_eq!(std::mem::size_of::<Result<()>>(), 16);
    }
}
