//! The WebSocket stream: Beast's `websocket::stream` ported to completion handlers on the
//! reactor.
//!
//! [`Stream`] wraps a next layer (any [`Transport`](crate::net::Transport): a
//! [`TcpStream`](crate::net::TcpStream), an in-memory [`test::Stream`](crate::test::Stream))
//! and offers Beast's operations with Beast's meaning.

mod core;
mod deflate;
mod direct_read;
mod handshake;
mod output;
mod read_buffer;
mod stream;
mod timeout;
mod whole_message;
mod write_queue;

pub use stream::Stream;
pub use timeout::Timeout;
pub use write_queue::WriteQueue;

/// The kind of control frame given to the control callback (Beast's `frame_type`).
///
/// ```
/// use rbeast::websocket::FrameType;
/// assert_ne!(FrameType::Ping, FrameType::Pong);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A close frame was received; the payload is the reason text.
    Close,
    /// A ping was received (the pong is sent automatically).
    Ping,
    /// A pong was received.
    Pong,
}
