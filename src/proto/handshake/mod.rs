//! The HTTP/1.1 upgrade handshake of RFC 6455 §4, sans-IO.
//!
//! Messages are the [`http`] crate's types: a client builds an [`http::Request<()>`]
//! ([`RequestType`]) with [`ClientHandshake`], serialises it, feeds the bytes it reads to a
//! [`ResponseParser`] and checks the [`ResponseType`] it gets back with
//! [`ClientHandshake::check_response`]. A server feeds bytes to a [`RequestParser`], then
//! [`accept`] checks the request in Beast's order and builds the response to send (a `101
//! Switching Protocols`, or Beast's `400`/`426` error responses, or a rejection chosen by an
//! [`AcceptHook`]).
//!
//! ```
//! use rbeast::proto::deflate::PermessageDeflate;
//! use rbeast::proto::handshake::*;
//!
//! // Client side: build and serialise the request.
//! let client = ClientHandshake::new("example.com:80", "/chat", &ClientConfig::default())?;
//! let bytes = client.to_bytes();
//!
//! // Server side: parse it (here in one piece), check it, answer.
//! let mut parser = RequestParser::new(ParserOptions::default());
//! let parsed = parser.feed(&bytes)?.expect("complete");
//! assert_eq!(parsed.consumed, bytes.len());
//! let answer = accept(&parsed.message, &ServerConfig::default(), None, &mut |_| {});
//! let negotiated = answer.result.as_ref().unwrap();
//! assert_eq!(answer.response.status(), 101);
//! assert!(negotiated.deflate.is_none());
//!
//! // Client side again: parse and check the response.
//! let mut parser = ResponseParser::new(ParserOptions::default());
//! let parsed = parser.feed(&answer.to_bytes())?.expect("complete");
//! client.check_response(&parsed.message)?;
//! # Ok::<(), rbeast::Error>(())
//! ```

mod client;
mod key;
mod parser;
mod server;
mod token;
mod write;

pub use client::{ClientConfig, ClientHandshake};
pub use key::{accept_key, generate_key, generate_key_with, MAX_SEC_KEY_LEN, WEBSOCKET_GUID};
pub use parser::{
    Parsed, ParserOptions, RequestParser, ResponseParser, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADERS, DEFAULT_MAX_HEADER_BYTES,
};
pub use server::{
    accept, check_request, expects_continue, is_upgrade, offered_subprotocols, AcceptDecision,
    AcceptHook, ServerConfig, ServerHandshake, CONTINUE_RESPONSE,
};
pub use token::has_token;
pub use write::{write_request, write_response};

use crate::proto::deflate::PmdParams;

/// The type of an upgrade request: an HTTP request with no body (Beast's `request_type`).
pub type RequestType = http::Request<()>;

/// The type of an upgrade response: an HTTP response whose body is kept, so that a client
/// can show the body of a `4xx` answer (Beast's `response_type`, with bytes for the body).
pub type ResponseType = http::Response<Vec<u8>>;

/// What a successful handshake agreed on.
///
/// ```
/// let n = rbeast::proto::handshake::Negotiated::default();
/// assert!(n.deflate.is_none() && n.subprotocol.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The permessage-deflate parameters in force, or `None` when compression is off.
    pub deflate: Option<PmdParams>,
    /// The subprotocol chosen by the server (`Sec-WebSocket-Protocol`), if any.
    pub subprotocol: Option<String>,
}

#[cfg(test)]
mod tests;
