//! TLS for `wss://` (feature `tls`): [`Stream`], a rustls stream that is itself a
//! [`Transport`](crate::net::Transport), so that `websocket::Stream<tls::Stream<TcpStream>>`
//! is Beast's `websocket::stream<ssl_stream<tcp_stream>>`.
//!
//! rustls runs sans-IO here: its connection is fed from the next layer's readiness events,
//! with no thread and no blocking call. The configuration types are rustls's own
//! ([`rustls::ClientConfig`], [`rustls::ServerConfig`]), gathered in a [`Context`]
//! (Beast's `ssl::context`); helpers build them from PEM files and from the platform's or a
//! given set of root certificates. The crypto provider is rustls's `aws-lc-rs` (see
//! [`crypto_provider`]).
//!
//! | Beast | rbeast |
//! |---|---|
//! | `ssl::context` | [`Context`] |
//! | `ssl_stream<NextLayer>` | [`Stream<T>`] |
//! | `async_handshake(ssl::stream_base::client, h)` | [`Stream::async_handshake`]`(HandshakeType::Client, h)` |
//! | `async_shutdown(h)` | [`Stream::async_shutdown`] |
//! | `ssl::error::stream_truncated` | [`Error::StreamTruncated`](crate::Error::StreamTruncated) |
//!
//! A `wss://` echo round trip over loopback, with a throwaway certificate:
//!
//! ```
//! use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
//! use rbeast::tls::{self, HandshakeType};
//! use rbeast::websocket;
//!
//! // A self-signed certificate for "localhost", made for this example only.
//! let key = rcgen::KeyPair::generate().unwrap();
//! let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
//!     .unwrap()
//!     .self_signed(&key)
//!     .unwrap();
//! let key = tls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
//! let server_ctx = tls::Context::server(tls::server_config(vec![cert.der().clone()], key).unwrap());
//! let mut roots = tls::rustls::RootCertStore::empty();
//! roots.add(cert.der().clone()).unwrap();
//! let client_ctx = tls::Context::client(tls::client_config(roots).unwrap());
//!
//! let ctx = IoContext::new().unwrap();
//! let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
//! let addr = acceptor.local_addr().unwrap();
//! acceptor.async_accept(move |sock| {
//!     let ws = websocket::Stream::new(tls::Stream::new(sock.unwrap(), &server_ctx));
//!     let w = ws.clone();
//!     ws.next_layer().async_handshake(HandshakeType::Server, move |r| {
//!         r.unwrap();
//!         let w2 = w.clone();
//!         w.async_accept(move |r| {
//!             r.unwrap();
//!             let buf = FlatBuffer::new();
//!             let (w3, b) = (w2.clone(), buf.clone());
//!             w2.async_read(&buf, move |r, _| {
//!                 r.unwrap();
//!                 w3.async_write(b.take(), |r, _| r.unwrap());
//!                 // The last handler keeps the stream: dropping it would abort the read.
//!                 let keep = w3.clone();
//!                 w3.async_read(&b, move |r, _| {
//!                     assert_eq!(r, Err(rbeast::Error::Closed));
//!                     drop(keep);
//!                 });
//!             });
//!         });
//!     });
//! });
//!
//! let ws = websocket::Stream::new(tls::Stream::new(TcpStream::new(&ctx), &client_ctx));
//! let w = ws.clone();
//! ws.next_layer().next_layer().async_connect(addr, move |r| {
//!     r.unwrap();
//!     w.next_layer().set_server_name("localhost").unwrap();
//!     let w2 = w.clone();
//!     w.next_layer().async_handshake(HandshakeType::Client, move |r| {
//!         r.unwrap();
//!         let w3 = w2.clone();
//!         w2.async_handshake("localhost", "/", move |r| {
//!             r.unwrap();
//!             let w4 = w3.clone();
//!             w3.async_write(&b"hello over TLS"[..], move |r, _| {
//!                 r.unwrap();
//!                 let buf = FlatBuffer::new();
//!                 let (w5, b) = (w4.clone(), buf.clone());
//!                 w4.async_read(&buf, move |r, _| {
//!                     r.unwrap();
//!                     assert_eq!(&*b.data(), b"hello over TLS");
//!                     let keep = w5.clone();
//!                     w5.async_close(rbeast::proto::close::CloseCode::NORMAL, move |r| {
//!                         r.unwrap(); // the closing handshake, then the TLS shutdown
//!                         drop(keep);
//!                     });
//!                 });
//!             });
//!         });
//!     });
//! });
//! ctx.run();
//! ```

mod buffers;
mod config;
mod engine;
mod handshake;
mod records;
mod shutdown;
mod stream;

pub use config::{
    client_config, client_config_from_ca_pem_file, client_config_native_roots, crypto_provider,
    load_certs, load_private_key, server_config, server_config_from_pem_files, Context,
};
pub use handshake::HandshakeType;
pub use stream::{Stream, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_OUTPUT_LIMIT};

/// The rustls crate this module is built on, for its configuration types.
pub use rustls;
