//! The client side: building the upgrade request and checking the response.

use http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, Version};

use super::token::{has_token, list_items, trim_ows};
use super::{accept_key, generate_key, write_request, Negotiated, RequestType};
use crate::proto::deflate::{check_reply, client_offer, PermessageDeflate};
use crate::{ArgumentError, Error, Result};

/// What a client offers in its upgrade request.
///
/// ```
/// use rbeast::proto::handshake::ClientConfig;
/// let cfg = ClientConfig { subprotocols: vec!["chat".into()], ..Default::default() };
/// assert!(!cfg.deflate.client_enable);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientConfig {
    /// permessage-deflate options; an offer is sent when `client_enable` is set.
    pub deflate: PermessageDeflate,
    /// Subprotocols offered in `Sec-WebSocket-Protocol`, in order of preference (none by
    /// default). Each must be an HTTP token.
    pub subprotocols: Vec<String>,
}

/// A client's upgrade request, with what is needed to check the server's answer.
///
/// ```
/// use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
/// let hs = ClientHandshake::with_decorator(
///     "example.com:8080", "/ws", &ClientConfig::default(),
///     &mut |req| { req.headers_mut().insert("user-agent", "demo".parse().unwrap()); },
/// )?;
/// let text = String::from_utf8(hs.to_bytes()).unwrap();
/// assert!(text.starts_with("GET /ws HTTP/1.1\r\nHost: example.com:8080\r\nUpgrade: websocket\r\n"));
/// assert!(text.contains("User-Agent: demo\r\n"));
/// # Ok::<(), rbeast::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientHandshake {
    request: RequestType,
    key: String,
    deflate: PermessageDeflate,
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

impl ClientHandshake {
    /// Builds the request for `host` (sent verbatim in `Host`; append `:port` as Beast's
    /// examples do) and `target`, with a fresh random key.
    ///
    /// Errors: [`Error::InvalidArgument`] for a host, target or subprotocol that cannot be
    /// sent, or invalid permessage-deflate options.
    ///
    /// ```
    /// use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::new("h", "/", &ClientConfig::default())?;
    /// assert_eq!(hs.request().headers()["sec-websocket-version"], "13");
    /// assert_eq!(hs.key().len(), 24);
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn new(host: &str, target: &str, config: &ClientConfig) -> Result<Self> {
        Self::with_key(generate_key()?, host, target, config, &mut |_| {})
    }

    /// Like [`new`](Self::new), then calls `decorator` on the request (Beast's decorator
    /// option): it runs after every built-in field is set and may change anything.
    ///
    /// ```
    /// use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::with_decorator("h", "/", &ClientConfig::default(), &mut |r| {
    ///     r.headers_mut().insert("origin", "https://h".parse().unwrap());
    /// })?;
    /// assert_eq!(hs.request().headers()["origin"], "https://h");
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn with_decorator(
        host: &str,
        target: &str,
        config: &ClientConfig,
        decorator: &mut dyn FnMut(&mut RequestType),
    ) -> Result<Self> {
        Self::with_key(generate_key()?, host, target, config, decorator)
    }

    /// Like [`with_decorator`](Self::with_decorator) with a given `Sec-WebSocket-Key` (for
    /// tests and reproducible runs).
    ///
    /// ```
    /// use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::with_key("dGhlIHNhbXBsZSBub25jZQ==".into(), "h", "/", &ClientConfig::default(), &mut |_| {})?;
    /// assert_eq!(hs.request().headers()["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn with_key(
        key: String,
        host: &str,
        target: &str,
        config: &ClientConfig,
        decorator: &mut dyn FnMut(&mut RequestType),
    ) -> Result<Self> {
        config.deflate.validate()?;
        fn bad<E>(what: ArgumentError) -> impl Fn(E) -> Error {
            move |_| Error::InvalidArgument(what)
        }
        let mut request = RequestType::new(());
        *request.method_mut() = Method::GET;
        *request.version_mut() = Version::HTTP_11;
        *request.uri_mut() = Uri::try_from(target).map_err(bad(ArgumentError::HandshakeTarget))?;
        let h = request.headers_mut();
        h.insert(
            HOST,
            HeaderValue::from_str(host).map_err(bad(ArgumentError::HandshakeHost))?,
        );
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_str(&key).map_err(bad(ArgumentError::HandshakeKey))?,
        );
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if let Some(offer) = client_offer(&config.deflate) {
            h.insert(
                SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_str(&offer).map_err(bad(ArgumentError::DeflateOffer))?,
            );
        }
        if !config.subprotocols.is_empty() {
            if !config.subprotocols.iter().all(|p| is_token(p.as_bytes())) {
                return Err(Error::InvalidArgument(ArgumentError::Subprotocol));
            }
            let list = config.subprotocols.join(", ");
            h.insert(
                SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(&list).map_err(bad(ArgumentError::Subprotocol))?,
            );
        }
        decorator(&mut request);
        Ok(ClientHandshake {
            request,
            key,
            deflate: config.deflate,
        })
    }

    /// The request to send.
    ///
    /// ```
    /// # use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::new("h", "/x", &ClientConfig::default())?;
    /// assert_eq!(hs.request().uri(), "/x");
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn request(&self) -> &RequestType {
        &self.request
    }

    /// The `Sec-WebSocket-Key` sent.
    ///
    /// ```
    /// # use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::new("h", "/", &ClientConfig::default())?;
    /// assert_eq!(hs.key(), hs.request().headers()["sec-websocket-key"]);
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Appends the request's bytes to `out`.
    ///
    /// ```
    /// # use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::new("h", "/", &ClientConfig::default())?;
    /// let mut out = Vec::new();
    /// hs.write_to(&mut out);
    /// assert!(out.ends_with(b"\r\n\r\n"));
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_request(&self.request, out);
    }

    /// The request's bytes.
    ///
    /// ```
    /// # use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::new("h", "/", &ClientConfig::default())?;
    /// assert!(hs.to_bytes().starts_with(b"GET / HTTP/1.1\r\n"));
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.write_to(&mut out);
        out
    }

    /// Checks the server's response in Beast's order: status not 101 →
    /// [`Error::UpgradeDeclined`]; version not 1.1 → [`Error::BadHttpVersion`];
    /// `Connection` → [`Error::NoConnection`] / [`Error::NoConnectionUpgrade`]; `Upgrade` →
    /// [`Error::NoUpgrade`] / [`Error::NoUpgradeWebsocket`]; `Sec-WebSocket-Accept` →
    /// [`Error::NoSecAccept`] / [`Error::BadSecAccept`]. Then, beyond Beast, the
    /// permessage-deflate reply against our offer ([`Error::BadExtensionReply`]) and the
    /// subprotocol against the request's final offer ([`Error::BadSubprotocol`]).
    ///
    /// ```
    /// # use rbeast::proto::handshake::{ClientConfig, ClientHandshake};
    /// let hs = ClientHandshake::new("h", "/", &ClientConfig::default())?;
    /// let res = http::Response::builder().status(403).body(Vec::<u8>::new()).unwrap();
    /// assert_eq!(hs.check_response(&res), Err(rbeast::Error::UpgradeDeclined));
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn check_response<B>(&self, res: &Response<B>) -> Result<Negotiated> {
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::UpgradeDeclined);
        }
        if res.version() != Version::HTTP_11 {
            return Err(Error::BadHttpVersion);
        }
        let h = res.headers();
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
        let accept = h.get(SEC_WEBSOCKET_ACCEPT).ok_or(Error::NoSecAccept)?;
        if accept.as_bytes() != accept_key(&self.key).as_bytes() {
            return Err(Error::BadSecAccept);
        }
        let deflate = check_reply(
            &self.deflate,
            h.get_all(SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .map(|v| v.as_bytes()),
        )?;
        let subprotocol = self.check_subprotocol(h)?;
        Ok(Negotiated {
            deflate,
            subprotocol,
        })
    }

    fn check_subprotocol(&self, h: &HeaderMap) -> Result<Option<String>> {
        let mut chosen = h.get_all(SEC_WEBSOCKET_PROTOCOL).iter();
        let Some(value) = chosen.next() else {
            return Ok(None);
        };
        let name = trim_ows(value.as_bytes());
        let offered = self
            .request
            .headers()
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .any(|v| list_items(v.as_bytes()).any(|p| p == name));
        if chosen.next().is_some() || !is_token(name) || !offered {
            return Err(Error::BadSubprotocol);
        }
        Ok(Some(String::from_utf8_lossy(name).into_owned()))
    }
}
