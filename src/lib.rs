// The crate documentation is README.md. The link definitions before it win over the
// README's own (paths for a repository page), so that on docs.rs names link into the API
// and files to the published sources.
#![doc = "[architecture]: https://docs.rs/crate/rbeast/latest/source/docs/architecture.md"]
#![doc = "[porting]: https://docs.rs/crate/rbeast/latest/source/docs/porting.md"]
#![doc = "[performance]: https://docs.rs/crate/rbeast/latest/source/docs/performance.md"]
#![doc = "[conformance]: https://docs.rs/crate/rbeast/latest/source/docs/conformance.md"]
#![doc = "[fuzzing]: https://docs.rs/crate/rbeast/latest/source/docs/fuzzing.md"]
#![doc = "[ex-server-async]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_server_async.rs"]
#![doc = "[ex-client-async]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_client_async.rs"]
#![doc = "[ex-server-fast]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_server_fast.rs"]
#![doc = "[ex-chat]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_chat_server.rs"]
#![doc = "[ex-fragmented]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_client_fragmented.rs"]
#![doc = "[ex-ping]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_ping_timeout.rs"]
#![doc = "[ex-tcp-echo]: https://docs.rs/crate/rbeast/latest/source/examples/tcp_echo_server.rs"]
#![doc = "[ex-bench]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_server_bench.rs"]
#![doc = "[ex-tcp-bench]: https://docs.rs/crate/rbeast/latest/source/examples/tcp_echo_bench.rs"]
#![doc = "[ex-autobahn-client]: https://docs.rs/crate/rbeast/latest/source/examples/autobahn_client.rs"]
#![doc = "[ex-server-ssl]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_server_async_ssl.rs"]
#![doc = "[ex-client-ssl]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_client_async_ssl.rs"]
#![doc = "[ex-tls-cert]: https://docs.rs/crate/rbeast/latest/source/examples/tls_test_certificate.rs"]
#![doc = "[ex-client-bench]: https://docs.rs/crate/rbeast/latest/source/examples/websocket_client_bench.rs"]
#![doc = "[`IoContext`]: net::IoContext"]
#![doc = "[`Handle`]: net::Handle"]
#![doc = "[`Executor`]: net::Executor"]
#![doc = "[`ContextPool`]: net::ContextPool"]
#![doc = "[`TcpStream`]: net::TcpStream"]
#![doc = "[`TcpAcceptor`]: net::TcpAcceptor"]
#![doc = "[`FlatBuffer`]: net::FlatBuffer"]
#![doc = "[`websocket::Stream`]: websocket::Stream"]
#![doc = "[`WriteQueue`]: websocket::WriteQueue"]
#![doc = "[`Error`]: Error"]
#![doc = "[`test`]: mod@test"]
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod error;
mod role;

pub mod net;
pub mod proto;
pub mod test;
#[cfg(feature = "tls")]
pub mod tls;
pub mod websocket;

pub use error::{ArgumentError, Condition, Error, Result, TlsError, TlsErrorKind};
pub use role::Role;
