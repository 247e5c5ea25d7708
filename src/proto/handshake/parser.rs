//! Incremental parsers for the upgrade request and response, bounded in size.
//!
//! Bytes are fed as they arrive. Only the new bytes are scanned for the end of the header
//! (an empty line), so a header that trickles in one byte at a time costs linear time; the
//! header is parsed once, when it is complete. Each parser keeps at most
//! [`ParserOptions::max_header_bytes`] of header (plus, for a response that is not `101`,
//! at most [`ParserOptions::max_body_bytes`] of body), and reports how many bytes of the last
//! feed it used, so the caller keeps what follows (the first WebSocket frames).

use http::header::CONTENT_LENGTH;
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};

use super::{RequestType, ResponseType};
use crate::{ArgumentError, Error, Result};

/// Default bound on the size of a handshake header: 8 KiB. Beast uses 1536 bytes for
/// requests, which real browsers with many cookies exceed.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8192;

/// Default bound on the number of header fields.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Default bound on the body of a non-`101` response kept for the caller: 64 KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Bounds applied by [`RequestParser`] and [`ResponseParser`].
///
/// ```
/// use rbeast::proto::handshake::ParserOptions;
/// let beast_like = ParserOptions { max_header_bytes: 1536, ..ParserOptions::default() };
/// assert_eq!(ParserOptions::default().max_header_bytes, 8192);
/// # let _ = beast_like;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserOptions {
    /// Largest header accepted, in bytes, from the first byte to the end of the empty line
    /// that ends it; beyond it the parser fails with [`Error::HeaderTooLarge`].
    pub max_header_bytes: usize,
    /// Largest number of header fields; beyond it: [`Error::HeaderTooLarge`].
    pub max_headers: usize,
    /// Largest `Content-Length` body read after a response that is not `101`; beyond it:
    /// [`Error::BufferOverflow`]. Requests never have a body here.
    pub max_body_bytes: usize,
}

impl Default for ParserOptions {
    fn default() -> Self {
        ParserOptions {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// A complete message and the number of bytes of the last feed that belonged to it.
///
/// ```
/// use rbeast::proto::handshake::{ParserOptions, RequestParser};
/// let mut p = RequestParser::new(ParserOptions::default());
/// let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\x81\x00";
/// let parsed = p.feed(input)?.unwrap();
/// assert_eq!(&input[parsed.consumed..], b"\x81\x00"); // frame data stays with the caller
/// # Ok::<(), rbeast::Error>(())
/// ```
#[derive(Debug)]
pub struct Parsed<M> {
    /// The parsed message.
    pub message: M,
    /// How many bytes of the input passed to the last `feed` call were used.
    pub consumed: usize,
}

/// Collects header bytes and finds the empty line that ends the header.
#[derive(Debug, Default)]
struct HeaderScanner {
    buf: Vec<u8>,
    line_has_content: bool,
    seen_content: bool,
}

impl HeaderScanner {
    /// Takes bytes of `input` up to the end of the header. Returns how many bytes it took
    /// once the header is complete, `None` when all of `input` was taken and more is needed.
    fn feed(&mut self, input: &[u8], max: usize) -> Result<Option<usize>> {
        for (i, &b) in input.iter().enumerate() {
            if self.buf.len() + i >= max {
                return Err(Error::HeaderTooLarge);
            }
            match b {
                b'\n' => {
                    if !self.line_has_content && self.seen_content {
                        self.buf.extend_from_slice(&input[..=i]);
                        return Ok(Some(i + 1));
                    }
                    self.line_has_content = false;
                }
                b'\r' => {}
                _ => {
                    self.line_has_content = true;
                    self.seen_content = true;
                }
            }
        }
        self.buf.extend_from_slice(input);
        Ok(None)
    }
}

fn map_httparse(e: httparse::Error) -> Error {
    match e {
        httparse::Error::Version => Error::BadHttpVersion,
        httparse::Error::TooManyHeaders => Error::HeaderTooLarge,
        _ => Error::BadHttp,
    }
}

fn version(v: Option<u8>) -> Result<Version> {
    match v {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(Error::BadHttpVersion),
    }
}

fn fields(parsed: &[httparse::Header<'_>], into: &mut HeaderMap) -> Result<()> {
    for h in parsed {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| Error::BadHttp)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| Error::BadHttp)?;
        into.append(name, value);
    }
    Ok(())
}

/// Parses an upgrade request fed in pieces (server side).
///
/// ```
/// use rbeast::proto::handshake::{ParserOptions, RequestParser};
/// let mut p = RequestParser::new(ParserOptions::default());
/// assert!(p.feed(b"GET /chat HTTP/1.1\r\nHost: x\r").unwrap().is_none());
/// let req = p.feed(b"\n\r\n").unwrap().unwrap().message;
/// assert_eq!(req.uri(), "/chat");
/// assert_eq!(req.headers()["host"], "x");
/// ```
#[derive(Debug)]
pub struct RequestParser {
    opts: ParserOptions,
    scanner: HeaderScanner,
    done: bool,
}

impl RequestParser {
    /// A parser with the given bounds.
    ///
    /// ```
    /// let p = rbeast::proto::handshake::RequestParser::new(Default::default());
    /// # let _ = p;
    /// ```
    pub fn new(opts: ParserOptions) -> Self {
        RequestParser {
            opts,
            scanner: HeaderScanner::default(),
            done: false,
        }
    }

    /// Feeds the next bytes read from the socket.
    ///
    /// Returns `Ok(None)` when more bytes are needed (all of `input` was kept), or the
    /// request and the number of bytes of `input` it used. Errors: [`Error::HeaderTooLarge`]
    /// beyond the bounds, [`Error::BadHttp`] for malformed bytes, [`Error::BadHttpVersion`]
    /// for a version httparse does not know, [`Error::InvalidArgument`] when fed again after
    /// it returned a request.
    ///
    /// ```
    /// use rbeast::proto::handshake::RequestParser;
    /// let mut p = RequestParser::new(Default::default());
    /// assert_eq!(p.feed(b"\x16\x03\x01\r\n\r\n").unwrap_err(), rbeast::Error::BadHttp);
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<Parsed<RequestType>>> {
        if self.done {
            return Err(Error::InvalidArgument(ArgumentError::ParserFinished));
        }
        let Some(consumed) = self.scanner.feed(input, self.opts.max_header_bytes)? else {
            return Ok(None);
        };
        self.done = true;
        let buf = std::mem::take(&mut self.scanner.buf);
        let mut headers = vec![httparse::EMPTY_HEADER; self.opts.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf).map_err(map_httparse)? {
            httparse::Status::Complete(n) if n == buf.len() => {}
            _ => return Err(Error::BadHttp),
        }
        let method = req.method.ok_or(Error::BadHttp)?;
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| Error::BadHttp)?;
        let uri = Uri::try_from(req.path.ok_or(Error::BadHttp)?).map_err(|_| Error::BadHttp)?;
        let mut message = Request::new(());
        *message.method_mut() = method;
        *message.uri_mut() = uri;
        *message.version_mut() = version(req.version)?;
        fields(req.headers, message.headers_mut())?;
        Ok(Some(Parsed { message, consumed }))
    }
}

#[derive(Debug)]
enum ResponseState {
    Header,
    Body {
        message: ResponseType,
        remaining: usize,
    },
    Done,
}

/// Parses an upgrade response fed in pieces (client side), with its body when the status
/// is not `101`.
///
/// The body is read only when the response has a `Content-Length`; without one (or with
/// `Transfer-Encoding`) the body is left empty and the message ends with the header, since
/// the handshake has failed anyway and the connection is not reused.
///
/// ```
/// use rbeast::proto::handshake::ResponseParser;
/// let mut p = ResponseParser::new(Default::default());
/// let input = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope";
/// let parsed = p.feed(input)?.unwrap();
/// assert_eq!(parsed.message.status(), 403);
/// assert_eq!(parsed.message.body(), b"nope");
/// # Ok::<(), rbeast::Error>(())
/// ```
#[derive(Debug)]
pub struct ResponseParser {
    opts: ParserOptions,
    scanner: HeaderScanner,
    state: ResponseState,
}

impl ResponseParser {
    /// A parser with the given bounds.
    ///
    /// ```
    /// let p = rbeast::proto::handshake::ResponseParser::new(Default::default());
    /// # let _ = p;
    /// ```
    pub fn new(opts: ParserOptions) -> Self {
        ResponseParser {
            opts,
            scanner: HeaderScanner::default(),
            state: ResponseState::Header,
        }
    }

    /// Feeds the next bytes read from the socket; same contract as [`RequestParser::feed`],
    /// plus [`Error::BufferOverflow`] when a body is longer than
    /// [`ParserOptions::max_body_bytes`].
    ///
    /// ```
    /// use rbeast::proto::handshake::ResponseParser;
    /// let mut p = ResponseParser::new(Default::default());
    /// let bytes = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00";
    /// let parsed = p.feed(bytes)?.unwrap();
    /// assert_eq!(parsed.consumed, bytes.len() - 2);
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<Parsed<ResponseType>>> {
        match std::mem::replace(&mut self.state, ResponseState::Done) {
            ResponseState::Done => Err(Error::InvalidArgument(ArgumentError::ParserFinished)),
            ResponseState::Header => {
                let Some(used) = self.scanner.feed(input, self.opts.max_header_bytes)? else {
                    self.state = ResponseState::Header;
                    return Ok(None);
                };
                let message = self.parse_header()?;
                let remaining = body_length(&message, self.opts.max_body_bytes)?;
                self.body(message, remaining, &input[used..], used)
            }
            ResponseState::Body { message, remaining } => self.body(message, remaining, input, 0),
        }
    }

    fn parse_header(&mut self) -> Result<ResponseType> {
        let buf = std::mem::take(&mut self.scanner.buf);
        let mut headers = vec![httparse::EMPTY_HEADER; self.opts.max_headers];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(&buf).map_err(map_httparse)? {
            httparse::Status::Complete(n) if n == buf.len() => {}
            _ => return Err(Error::BadHttp),
        }
        let code = res.code.ok_or(Error::BadHttp)?;
        let mut message = Response::new(Vec::new());
        *message.status_mut() = StatusCode::from_u16(code).map_err(|_| Error::BadHttp)?;
        *message.version_mut() = version(res.version)?;
        fields(res.headers, message.headers_mut())?;
        Ok(message)
    }

    fn body(
        &mut self,
        mut message: ResponseType,
        remaining: usize,
        input: &[u8],
        used: usize,
    ) -> Result<Option<Parsed<ResponseType>>> {
        let take = remaining.min(input.len());
        message.body_mut().extend_from_slice(&input[..take]);
        let remaining = remaining - take;
        if remaining == 0 {
            Ok(Some(Parsed {
                message,
                consumed: used + take,
            }))
        } else {
            self.state = ResponseState::Body { message, remaining };
            Ok(None)
        }
    }
}

/// The number of body bytes that follow a response header.
fn body_length(res: &ResponseType, max: usize) -> Result<usize> {
    if !super::write::has_body(res.status()) {
        return Ok(0);
    }
    let mut length = None;
    for v in res.headers().get_all(CONTENT_LENGTH) {
        let s = std::str::from_utf8(v.as_bytes())
            .map_err(|_| Error::BadHttp)?
            .trim();
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::BadHttp);
        }
        let n: u64 = s.parse().map_err(|_| Error::BufferOverflow)?;
        if length.is_some_and(|l| l != n) {
            return Err(Error::BadHttp);
        }
        length = Some(n);
    }
    if res.headers().contains_key(http::header::TRANSFER_ENCODING) {
        return Ok(0);
    }
    match length {
        None => Ok(0),
        Some(n) if n > max as u64 => Err(Error::BufferOverflow),
        Some(n) => Ok(n as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    /// Feeds `input` cut at `cut`, then the rest; checks the message and the consumed count.
    fn feed_split(input: &[u8], cut: usize, tail: &[u8]) -> RequestType {
        let mut p = RequestParser::new(ParserOptions::default());
        assert!(p.feed(&input[..cut]).unwrap().is_none(), "cut {cut}");
        let mut second = input[cut..].to_vec();
        second.extend_from_slice(tail);
        let parsed = p.feed(&second).unwrap().unwrap();
        assert_eq!(&second[parsed.consumed..], tail);
        parsed.message
    }

    #[test]
    fn request_any_split() {
        for cut in 0..REQ.len() {
            let m = feed_split(REQ, cut, b"\x81\x80abcd");
            assert_eq!(m.method(), Method::GET);
            assert_eq!(m.uri(), "/chat");
            assert_eq!(m.version(), Version::HTTP_11);
            assert_eq!(m.headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
            assert_eq!(m.headers().len(), 5);
        }
    }

    #[test]
    fn request_byte_by_byte() {
        let mut p = RequestParser::new(ParserOptions::default());
        for (i, b) in REQ.iter().enumerate() {
            let r = p.feed(std::slice::from_ref(b)).unwrap();
            assert_eq!(r.is_some(), i + 1 == REQ.len());
        }
        assert!(matches!(p.feed(b"x"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn bare_lf_and_leading_empty_lines() {
        let mut p = RequestParser::new(ParserOptions::default());
        let r = p
            .feed(b"\r\nGET / HTTP/1.1\nHost: a\n\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(r.consumed, 26);
        assert_eq!(r.message.headers()["host"], "a");
    }

    #[test]
    fn header_size_cap() {
        let opts = ParserOptions {
            max_header_bytes: REQ.len(),
            ..Default::default()
        };
        let mut p = RequestParser::new(opts);
        assert!(p.feed(REQ).unwrap().is_some());
        let opts = ParserOptions {
            max_header_bytes: REQ.len() - 1,
            ..Default::default()
        };
        for cut in [1, REQ.len() / 2, REQ.len() - 1] {
            let mut p = RequestParser::new(opts);
            let first = p.feed(&REQ[..cut]);
            let r = first.and_then(|_| p.feed(&REQ[cut..]));
            assert_eq!(r.unwrap_err(), Error::HeaderTooLarge, "cut {cut}");
        }
        // Endless garbage without an empty line stops at the cap.
        let mut p = RequestParser::new(ParserOptions::default());
        let junk = vec![b'a'; 1000];
        let mut err = None;
        for _ in 0..20 {
            if let Err(e) = p.feed(&junk) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(Error::HeaderTooLarge));
        assert!(p.scanner.buf.len() <= DEFAULT_MAX_HEADER_BYTES);
    }

    #[test]
    fn too_many_headers() {
        let opts = ParserOptions {
            max_headers: 4,
            ..Default::default()
        };
        let mut p = RequestParser::new(opts);
        assert_eq!(p.feed(REQ).unwrap_err(), Error::HeaderTooLarge);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n",
        ] {
            let mut p = RequestParser::new(ParserOptions::default());
            assert_eq!(p.feed(bad).unwrap_err(), Error::BadHttp, "{bad:?}");
        }
        let mut p = RequestParser::new(ParserOptions::default());
        assert_eq!(
            p.feed(b"GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            Error::BadHttpVersion
        );
        let mut p = RequestParser::new(ParserOptions::default());
        let r = p.feed(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(r.message.version(), Version::HTTP_10);
    }

    const RES: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

    #[test]
    fn response_any_split_keeps_frames() {
        for cut in 0..RES.len() {
            let mut p = ResponseParser::new(ParserOptions::default());
            assert!(p.feed(&RES[..cut]).unwrap().is_none());
            let mut rest = RES[cut..].to_vec();
            rest.extend_from_slice(b"\x81\x02hi");
            let parsed = p.feed(&rest).unwrap().unwrap();
            assert_eq!(&rest[parsed.consumed..], b"\x81\x02hi");
            assert_eq!(parsed.message.status(), 101);
            assert!(parsed.message.body().is_empty());
        }
    }

    #[test]
    fn response_body_in_pieces() {
        let input = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 10\r\n\r\n0123456789extra";
        for cut in 1..input.len() {
            let mut p = ResponseParser::new(ParserOptions::default());
            let mut got = p.feed(&input[..cut]).unwrap();
            let mut used_second = 0;
            if got.is_none() {
                let parsed = p.feed(&input[cut..]).unwrap().unwrap();
                used_second = parsed.consumed;
                got = Some(parsed);
            }
            let parsed = got.unwrap();
            assert_eq!(parsed.message.body(), b"0123456789");
            if cut >= input.len() - 5 {
                assert_eq!(parsed.consumed, input.len() - 5);
            } else {
                assert_eq!(cut + used_second, input.len() - 5);
            }
        }
    }

    #[test]
    fn response_body_bounds() {
        let opts = ParserOptions {
            max_body_bytes: 3,
            ..Default::default()
        };
        let mut p = ResponseParser::new(opts);
        let r = p.feed(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(r.unwrap_err(), Error::BufferOverflow);
        let mut p = ResponseParser::new(Default::default());
        let r =
            p.feed(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(r.unwrap_err(), Error::BufferOverflow);
        for bad in ["-1", "1, 2", "", "0x10"] {
            let mut p = ResponseParser::new(Default::default());
            let text = format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {bad}\r\n\r\n");
            assert_eq!(
                p.feed(text.as_bytes()).unwrap_err(),
                Error::BadHttp,
                "{bad}"
            );
        }
        // No length, or chunked: the body is not read.
        let mut p = ResponseParser::new(Default::default());
        let input =
            b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc";
        let r = p.feed(input).unwrap().unwrap();
        assert_eq!(r.consumed, input.len() - 3);
        assert!(r.message.body().is_empty());
        let mut p = ResponseParser::new(Default::default());
        let input = b"HTTP/1.1 500 Oops\r\n\r\nabc";
        assert_eq!(p.feed(input).unwrap().unwrap().consumed, input.len() - 3);
    }

    #[test]
    fn response_malformed() {
        for bad in [
            &b"HTTP/1.1 abc Foo\r\n\r\n"[..],
            b"HTTP/1.1 99 x\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            let mut p = ResponseParser::new(Default::default());
            assert!(p.feed(bad).is_err(), "{bad:?}");
        }
    }
}
