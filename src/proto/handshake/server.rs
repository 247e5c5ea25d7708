//! The server side: checking the upgrade request and building the response.

use http::header::{
    CONNECTION, EXPECT, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, SERVER, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};

use super::token::{has_token, list_items, trim_ows};
use super::{accept_key, write_response, Negotiated, ResponseType, MAX_SEC_KEY_LEN};
use crate::proto::deflate::{negotiate, read_params, PermessageDeflate};
use crate::{ArgumentError, Error, Result};

/// The interim response a server writes first when the request has
/// `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The `Server` field added to every response unless the decorator sets one.
const DEFAULT_SERVER: &str = concat!("rbeast/", env!("CARGO_PKG_VERSION"));

/// What a server accepts.
///
/// ```
/// use rbeast::proto::handshake::ServerConfig;
/// let mut cfg = ServerConfig::default();
/// cfg.deflate.server_enable = true;
/// # let _ = cfg;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerConfig {
    /// permessage-deflate options; offers are considered when `server_enable` is set.
    pub deflate: PermessageDeflate,
}

/// The answer of an [`AcceptHook`] to a valid upgrade request (beyond Beast; see Beast
/// issue #1908).
///
/// ```
/// use rbeast::proto::handshake::AcceptDecision;
/// let yes = AcceptDecision::accept().with_subprotocol("chat").with_header("x-id", "7");
/// let no = AcceptDecision::reject(http::StatusCode::FORBIDDEN, "go away");
/// # let _ = (yes, no);
/// ```
#[derive(Debug, Clone)]
pub enum AcceptDecision {
    /// Upgrade, choosing a subprotocol from the client's offer (or none) and adding fields
    /// to the `101` response.
    Accept {
        /// The chosen subprotocol; it must be one the client offered.
        subprotocol: Option<String>,
        /// Extra fields for the response.
        headers: HeaderMap,
    },
    /// Refuse: this response is sent (after the decorator) and the accept operation ends
    /// with [`Error::Rejected`].
    Reject(ResponseType),
}

impl AcceptDecision {
    /// Accept with no subprotocol and no extra field.
    ///
    /// ```
    /// let d = rbeast::proto::handshake::AcceptDecision::accept();
    /// assert!(matches!(d, rbeast::proto::handshake::AcceptDecision::Accept { .. }));
    /// ```
    pub fn accept() -> Self {
        AcceptDecision::Accept {
            subprotocol: None,
            headers: HeaderMap::new(),
        }
    }

    /// Sets the chosen subprotocol of an `Accept` (no effect on a `Reject`).
    ///
    /// ```
    /// let d = rbeast::proto::handshake::AcceptDecision::accept().with_subprotocol("v2");
    /// # let _ = d;
    /// ```
    pub fn with_subprotocol(mut self, name: impl Into<String>) -> Self {
        if let AcceptDecision::Accept { subprotocol, .. } = &mut self {
            *subprotocol = Some(name.into());
        }
        self
    }

    /// Adds a field to the response (either kind); a name or value that is not valid HTTP
    /// is ignored.
    ///
    /// ```
    /// let d = rbeast::proto::handshake::AcceptDecision::accept().with_header("set-cookie", "a=b");
    /// # let _ = d;
    /// ```
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let headers = match &mut self {
            AcceptDecision::Accept { headers, .. } => headers,
            AcceptDecision::Reject(res) => res.headers_mut(),
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
        self
    }

    /// Reject with a status and a body.
    ///
    /// ```
    /// use rbeast::proto::handshake::AcceptDecision;
    /// let d = AcceptDecision::reject(http::StatusCode::UNAUTHORIZED, "login first");
    /// # let _ = d;
    /// ```
    pub fn reject(status: StatusCode, body: impl Into<Vec<u8>>) -> Self {
        let mut res = Response::new(body.into());
        *res.status_mut() = status;
        AcceptDecision::Reject(res)
    }
}

/// A hook that sees every valid upgrade request before it is accepted.
pub type AcceptHook<'a, B = ()> = dyn FnMut(&Request<B>) -> AcceptDecision + 'a;

/// The outcome of [`accept`]: the response to send, and the result the accept operation
/// completes with once it is sent.
///
/// ```
/// use rbeast::proto::handshake::*;
/// let req = http::Request::get("/").header("host", "h").body(()).unwrap();
/// let out = accept(&req, &ServerConfig::default(), None, &mut |_| {});
/// assert_eq!(out.response.status(), 400);
/// assert_eq!(out.result, Err(rbeast::Error::NoConnection));
/// ```
#[derive(Debug)]
pub struct ServerHandshake {
    /// The response to send (also on failure, as Beast does).
    pub response: ResponseType,
    /// What the operation completes with after sending: the agreed parameters, or the
    /// check's error, or [`Error::Rejected`].
    pub result: Result<Negotiated>,
    /// The request had `Expect: 100-continue`: [`CONTINUE_RESPONSE`] goes out first
    /// ([`write_to`](Self::write_to) includes it).
    pub expect_continue: bool,
}

impl ServerHandshake {
    /// Appends the bytes to send to `out`: [`CONTINUE_RESPONSE`] when
    /// [`expect_continue`](Self::expect_continue), then the response.
    ///
    /// ```
    /// use rbeast::proto::handshake::*;
    /// let req = http::Request::get("/").header("expect", "100-continue").body(()).unwrap();
    /// let mut out = Vec::new();
    /// accept(&req, &ServerConfig::default(), None, &mut |_| {}).write_to(&mut out);
    /// assert!(out.starts_with(CONTINUE_RESPONSE));
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.expect_continue {
            out.extend_from_slice(CONTINUE_RESPONSE);
        }
        write_response(&self.response, out);
    }

    /// The bytes to send, as [`write_to`](Self::write_to).
    ///
    /// ```
    /// use rbeast::proto::handshake::*;
    /// let req = http::Request::post("/").body(()).unwrap();
    /// let bytes = accept(&req, &ServerConfig::default(), None, &mut |_| {}).to_bytes();
    /// assert!(bytes.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out);
        out
    }
}

/// Beast's `is_upgrade`: version at least 1.1, method GET, a `Connection` token `upgrade`
/// and an `Upgrade` token `websocket` (tokens compared case-insensitively). Key and version
/// are not checked; use it to route a request read by an HTTP server.
///
/// ```
/// let req = http::Request::get("/")
///     .header("connection", "keep-alive, Upgrade")
///     .header("upgrade", "WebSocket")
///     .body(()).unwrap();
/// assert!(rbeast::proto::handshake::is_upgrade(&req));
/// ```
pub fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() >= Version::HTTP_11
        && req.method() == Method::GET
        && has_token(req.headers(), CONNECTION, "upgrade") == Some(true)
        && has_token(req.headers(), UPGRADE, "websocket") == Some(true)
}

/// Whether the request has `Expect: 100-continue`.
///
/// ```
/// let req = http::Request::get("/").header("expect", "100-Continue").body(()).unwrap();
/// assert!(rbeast::proto::handshake::expects_continue(&req));
/// ```
pub fn expects_continue<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(EXPECT)
        .iter()
        .any(|v| trim_ows(v.as_bytes()).eq_ignore_ascii_case(b"100-continue"))
}

/// The subprotocols a request offers, in order.
///
/// ```
/// let req = http::Request::get("/").header("sec-websocket-protocol", "a, b").body(()).unwrap();
/// assert_eq!(rbeast::proto::handshake::offered_subprotocols(&req), ["a", "b"]);
/// ```
pub fn offered_subprotocols<B>(req: &Request<B>) -> Vec<&str> {
    req.headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| list_items(v.as_bytes()))
        .filter_map(|p| std::str::from_utf8(p).ok())
        .collect()
}

/// Checks an upgrade request in Beast's order: [`Error::BadHttpVersion`],
/// [`Error::BadMethod`], [`Error::NoHost`], [`Error::NoConnection`],
/// [`Error::NoConnectionUpgrade`], [`Error::NoUpgrade`], [`Error::NoUpgradeWebsocket`],
/// [`Error::NoSecKey`], [`Error::BadSecKey`] (longer than 24 characters: the only check
/// Beast makes), [`Error::NoSecVersion`], [`Error::BadSecVersion`] (not `13`).
///
/// ```
/// let req = http::Request::put("/").body(()).unwrap();
/// assert_eq!(rbeast::proto::handshake::check_request(&req), Err(rbeast::Error::BadMethod));
/// ```
pub fn check_request<B>(req: &Request<B>) -> Result<()> {
    if req.version() != Version::HTTP_11 {
        return Err(Error::BadHttpVersion);
    }
    if req.method() != Method::GET {
        return Err(Error::BadMethod);
    }
    let h = req.headers();
    if !h.contains_key(HOST) {
        return Err(Error::NoHost);
    }
    match has_token(h, CONNECTION, "upgrade") {
        None => return Err(Error::NoConnection),
        Some(false) => return Err(Error::NoConnectionUpgrade),
        Some(true) => {}
    }
    match has_token(h, UPGRADE, "websocket") {
        None => return Err(Error::NoUpgrade),
        Some(false) => return Err(Error::NoUpgradeWebsocket),
        Some(true) => {}
    }
    let key = h.get(SEC_WEBSOCKET_KEY).ok_or(Error::NoSecKey)?;
    if key.len() > MAX_SEC_KEY_LEN {
        return Err(Error::BadSecKey);
    }
    let version = h.get(SEC_WEBSOCKET_VERSION).ok_or(Error::NoSecVersion)?;
    if version.as_bytes() != b"13" {
        return Err(Error::BadSecVersion);
    }
    Ok(())
}

/// Checks `req` and builds the response, as Beast's `accept` does, plus the optional hook.
///
/// On a failed check the response is Beast's: `400 Bad Request` with the error's message as
/// body, or `426 Upgrade Required` with `Sec-WebSocket-Version: 13` for a bad version. A
/// valid request goes to `hook` (if any), which may reject it or choose a subprotocol;
/// then the `101` response gets `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, the
/// permessage-deflate reply and the hook's fields. `decorator` runs last on every
/// response, and a `Server` field is added if it set none. The permessage-deflate
/// parameters and subprotocol are read back from the final response, so a decorator that
/// changes them is honoured.
///
/// A hook that picks a subprotocol the client did not offer, or invalid options, give a
/// `500` response and [`Error::InvalidArgument`].
///
/// ```
/// use rbeast::proto::handshake::*;
/// let req = http::Request::get("/chat")
///     .header("host", "h").header("connection", "upgrade").header("upgrade", "websocket")
///     .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
///     .header("sec-websocket-version", "13")
///     .header("sec-websocket-protocol", "v1, v2")
///     .body(()).unwrap();
/// let mut hook = |r: &http::Request<()>| {
///     if offered_subprotocols(r).contains(&"v2") {
///         AcceptDecision::accept().with_subprotocol("v2")
///     } else {
///         AcceptDecision::reject(http::StatusCode::BAD_REQUEST, "v2 only")
///     }
/// };
/// let out = accept(&req, &ServerConfig::default(), Some(&mut hook), &mut |_| {});
/// assert_eq!(out.response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// assert_eq!(out.result.unwrap().subprotocol.as_deref(), Some("v2"));
/// ```
pub fn accept<B>(
    req: &Request<B>,
    config: &ServerConfig,
    hook: Option<&mut AcceptHook<'_, B>>,
    decorator: &mut dyn FnMut(&mut ResponseType),
) -> ServerHandshake {
    let expect_continue = expects_continue(req);
    let version = if req.version() == Version::HTTP_10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut finish = |mut response: ResponseType, result: Result<Negotiated>| {
        *response.version_mut() = version;
        decorator(&mut response);
        if !response.headers().contains_key(SERVER) {
            response
                .headers_mut()
                .insert(SERVER, HeaderValue::from_static(DEFAULT_SERVER));
        }
        let result = result.map(|_| read_back(&response, config));
        ServerHandshake {
            response,
            result,
            expect_continue,
        }
    };
    let failure = |status: StatusCode, e: Error| {
        let mut res = Response::new(e.to_string().into_bytes());
        *res.status_mut() = status;
        if e == Error::BadSecVersion {
            res.headers_mut()
                .insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        (res, Err(e))
    };
    if let Err(e) = config.deflate.validate() {
        let (res, r) = failure(StatusCode::INTERNAL_SERVER_ERROR, e);
        return finish(res, r);
    }
    if let Err(e) = check_request(req) {
        let status = if e == Error::BadSecVersion {
            StatusCode::UPGRADE_REQUIRED
        } else {
            StatusCode::BAD_REQUEST
        };
        let (res, r) = failure(status, e);
        return finish(res, r);
    }
    let decision = hook.map_or_else(AcceptDecision::accept, |h| h(req));
    let (subprotocol, extra) = match decision {
        AcceptDecision::Reject(res) => return finish(res, Err(Error::Rejected)),
        AcceptDecision::Accept {
            subprotocol,
            headers,
        } => (subprotocol, headers),
    };
    let mut res = Response::new(Vec::new());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    let key = req
        .headers()
        .get(SEC_WEBSOCKET_KEY)
        .map(|k| k.as_bytes())
        .unwrap_or_default();
    let accept = accept_key(&String::from_utf8_lossy(key));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    let offers = req.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
    if let Some((_, reply)) = negotiate(&config.deflate, offers.iter().map(|v| v.as_bytes())) {
        if let Ok(v) = HeaderValue::from_str(&reply) {
            h.insert(SEC_WEBSOCKET_EXTENSIONS, v);
        }
    }
    for (name, value) in &extra {
        h.append(name, value.clone());
    }
    if let Some(p) = subprotocol {
        let value = HeaderValue::from_str(&p).ok();
        match value.filter(|_| offered_subprotocols(req).contains(&p.as_str())) {
            Some(v) => {
                res.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, v);
            }
            None => {
                let e = Error::InvalidArgument(ArgumentError::SubprotocolNotOffered);
                let (res, r) = failure(StatusCode::INTERNAL_SERVER_ERROR, e);
                return finish(res, r);
            }
        }
    }
    finish(res, Ok(Negotiated::default()))
}

/// The agreement as stated by the final response.
fn read_back(res: &ResponseType, config: &ServerConfig) -> Negotiated {
    let h = res.headers();
    let deflate = if config.deflate.server_enable {
        read_params(
            h.get_all(SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .map(|v| v.as_bytes()),
        )
    } else {
        None
    };
    let subprotocol = h
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| std::str::from_utf8(trim_ows(v.as_bytes())).ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    Negotiated {
        deflate,
        subprotocol,
    }
}
