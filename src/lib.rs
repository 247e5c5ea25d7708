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

pub use error::{Condition, Error, Result, TlsError, TlsErrorKind};
pub use role::Role;
