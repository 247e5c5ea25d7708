//! permessage-deflate (RFC 7692): the option, the negotiation in both roles, and the
//! compressor and decompressor of message payloads.
//!
//! ```
//! use rbeast::proto::deflate::*;
//! use rbeast::Role;
//!
//! let client = PermessageDeflate { client_enable: true, ..Default::default() };
//! let server = PermessageDeflate { server_enable: true, ..Default::default() };
//! let offer = client_offer(&client).unwrap();
//! let (params, reply) = negotiate(&server, [offer.as_bytes()]).unwrap();
//! let agreed = check_reply(&client, [reply.as_bytes()])?.unwrap();
//! assert_eq!(agreed, params);
//!
//! // The client compresses a message, the server inflates it.
//! let mut deflater = Deflater::for_role(Role::Client, &agreed, &client);
//! let mut inflater = Inflater::for_role(Role::Server, &agreed);
//! let mut wire = Vec::new();
//! let progress = deflater.compress(b"hello hello hello", true, &mut wire, 4096)?;
//! assert!(progress.done);
//! let mut text = Vec::new();
//! inflater.inflate(&wire, true, &mut text, 1 << 20)?;
//! assert_eq!(text, b"hello hello hello");
//! # Ok::<(), rbeast::Error>(())
//! ```

mod codec;
mod extension;
mod negotiate;
mod options;

pub use codec::{
    DeflateProgress, Deflater, InflateProgress, Inflater, INFLATE_CHUNK, MIN_DEFLATE_CHUNK,
};
pub use negotiate::{
    check_reply, client_offer, negotiate, read_params, PermessageDeflateStatus, PmdParams,
    EXTENSION_NAME,
};
pub use options::PermessageDeflate;

#[cfg(test)]
mod negotiate_tests;
