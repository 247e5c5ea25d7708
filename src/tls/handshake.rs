//! The TLS handshake operation (Beast's `ssl_stream::async_handshake`).

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;

use super::config::config_error;
use super::engine::Pulled;
use super::records::Connection;
use super::stream::{Shared, Stream};
use crate::net::Transport;
use crate::{ArgumentError, Error};

/// Which side of the TLS handshake to take (Beast's `ssl::stream_base::handshake_type`).
///
/// ```
/// use rbeast::tls::HandshakeType;
/// assert_ne!(HandshakeType::Client, HandshakeType::Server);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeType {
    /// Connect as a client: needs a client configuration and a server name.
    Client,
    /// Accept as a server: needs a server configuration.
    Server,
}

/// Parses a host name (or IP address) for SNI and certificate verification.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| config_error(format!("bad server name {host:?}: {e}")))
}

impl<T: Transport> Shared<T> {
    /// Creates the rustls connection for `kind`.
    fn connection(&self, kind: HandshakeType) -> Result<Connection, Error> {
        let conn = match kind {
            HandshakeType::Client => {
                let config = self
                    .context
                    .client_config()
                    .ok_or_else(|| config_error("the context has no client configuration"))?;
                let host = self.server_name.borrow().clone().ok_or_else(|| {
                    config_error("a client handshake needs set_server_name first")
                })?;
                let name = server_name(&host)?;
                UnbufferedClientConnection::new(Arc::clone(config), name).map(Connection::Client)
            }
            HandshakeType::Server => {
                let config = self
                    .context
                    .server_config()
                    .ok_or_else(|| config_error("the context has no server configuration"))?;
                UnbufferedServerConnection::new(Arc::clone(config)).map(Connection::Server)
            }
        };
        conn.map_err(|e| super::engine::map_rustls_error(&e))
    }

    /// Advances a pending handshake; completes it when done or failed.
    pub(crate) fn advance_handshake(&self) {
        if self.ops.borrow().handshake.is_none() {
            return;
        }
        let result = {
            let mut engine = self.engine.borrow_mut();
            loop {
                if let Err(e) = engine.check() {
                    break Err(e);
                }
                let need_input = match engine.process() {
                    Ok(need_input) => need_input,
                    Err(e) => break Err(e),
                };
                if let Err(e) = engine.write_out() {
                    break Err(e);
                }
                let handshaking = engine.conn.as_ref().is_some_and(|c| c.is_handshaking());
                if !handshaking {
                    // Plaintext may already be buffered behind the last handshake message.
                    engine.readable = true;
                    engine.writable = true;
                    break Ok(());
                }
                if !need_input {
                    // rustls stopped short of its handshake (the peer closed the TLS).
                    break Err(engine.fail(Error::StreamTruncated));
                }
                match engine.pull() {
                    Ok(Pulled::Progress) => {}
                    Ok(Pulled::Blocked) => return,
                    Ok(Pulled::Eof) => break Err(engine.fail(Error::StreamTruncated)),
                    Err(e) => break Err(e),
                }
            }
        };
        let handler = self.ops.borrow_mut().handshake.take();
        if let Some(h) = handler {
            self.arm_timer(false);
            self.handle.complete_wait(h, result);
        }
    }
}

impl<T: Transport> Stream<T> {
    /// Performs the TLS handshake as `kind` (Beast's `async_handshake`). A client sends the
    /// name given to [`set_server_name`](Stream::set_server_name) (SNI) and verifies the
    /// server's certificate against it. Bounded by
    /// [`handshake_timeout`](Stream::handshake_timeout).
    ///
    /// The handler runs exactly once, from the context's run loop: `Ok(())`, or
    /// [`Error::Tls`] (bad certificate, alert, not TLS at all), [`Error::StreamTruncated`]
    /// (the peer closed), [`Error::Timeout`], [`Error::AlreadyStarted`], or
    /// [`Error::OperationAborted`] (closed).
    ///
    /// ```
    /// use rbeast::tls::{Context, HandshakeType, Stream};
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = Stream::new(a, &Context::default());
    /// // This context has no server configuration.
    /// s.async_handshake(HandshakeType::Server, |r| assert!(r.is_err()));
    /// ctx.run();
    /// ```
    pub fn async_handshake(
        &self,
        kind: HandshakeType,
        handler: impl FnOnce(Result<(), Error>) + 'static,
    ) {
        let shared = &self.shared;
        let refusal = {
            let engine = shared.engine.borrow();
            if engine.closed || !engine.next.is_open() {
                Some(Error::OperationAborted)
            } else if shared.ops.borrow().handshake.is_some() {
                Some(Error::AlreadyStarted)
            } else if engine.conn.is_some() {
                Some(Error::InvalidArgument(ArgumentError::TlsHandshakeDone))
            } else {
                None
            }
        };
        // The connection is made only for an operation that may start.
        let refusal = refusal.or_else(|| match shared.connection(kind) {
            Ok(conn) => {
                shared.engine.borrow_mut().conn = Some(conn);
                None
            }
            Err(e) => Some(e),
        });
        if shared.start_op(Box::new(handler), refusal, |ops| &mut ops.handshake) {
            shared.advance_handshake();
        }
    }
}
