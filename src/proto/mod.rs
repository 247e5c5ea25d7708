//! The WebSocket protocol, sans-IO: frame headers, masking, UTF-8 validation, close frames,
//! the HTTP upgrade handshake and permessage-deflate.
//!
//! Nothing here touches a socket, a handler or the reactor: these are functions and small
//! state machines over byte slices, used by [`websocket`](crate) streams and usable on
//! their own.

pub mod close;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;
