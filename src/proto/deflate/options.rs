//! The permessage-deflate option (Beast's `websocket::permessage_deflate`).

use std::time::Duration;

use crate::{ArgumentError, Error, Result};

/// permessage-deflate settings of a stream (RFC 7692), with Beast's fields and defaults.
///
/// Set before the handshake. Both roles are off by default. All fields but `idle_release`
/// are Beast's.
///
/// ```
/// use rbeast::proto::deflate::PermessageDeflate;
/// let pmd = PermessageDeflate { client_enable: true, server_enable: true, ..Default::default() };
/// assert_eq!(pmd.server_max_window_bits, 15);
/// assert_eq!(pmd.comp_level, 8);
/// pmd.validate()?;
/// # Ok::<(), rbeast::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermessageDeflate {
    /// A server accepts a valid permessage-deflate offer (default `false`).
    pub server_enable: bool,
    /// A client offers permessage-deflate (default `false`).
    pub client_enable: bool,
    /// The server's LZ77 window, 9..=15 (default 15). A client offers it; a server replies
    /// with the smaller of this and the offer.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 9..=15 (default 15). A client offers it; a server limits the
    /// client to it (and declines an offer without the parameter unless this is 15).
    pub client_max_window_bits: u8,
    /// The server resets its compressor after every message (default `false`).
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message (default `false`).
    pub client_no_context_takeover: bool,
    /// zlib compression level for outgoing messages, 0..=9 (default 8; Beast's `compLevel`).
    pub comp_level: u32,
    /// zlib memory level for outgoing messages, 1..=9 (default 4; Beast's `memLevel`): the
    /// compressor's symbol buffer holds 2^(`mem_level` + 6) symbols. zlib-rs keeps a hash
    /// table of fixed size, so unlike zlib the level does not size it.
    pub mem_level: u32,
    /// Compress a message only if its first write is at least this many bytes (default 0).
    pub msg_size_threshold: usize,
    /// With context takeover, free the zlib states of a connection whose compressed
    /// messages have paused this long (default `None`: kept for the connection's life, as
    /// Beast). Each direction then keeps its own copy of the last window of its data (at
    /// most 2^window-bits bytes, growing as data flows: a few bytes for a connection that
    /// sent little), and the next message rebuilds its state from it, at about the cost of
    /// compressing that much data once. The states take about 270 KiB to compress and
    /// 40 KiB to inflate; the freed memory goes back to the allocator (whether the process
    /// shrinks is the allocator's choice). Nothing on the wire changes. A direction without
    /// context takeover holds no state between messages anyway.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rbeast::proto::deflate::PermessageDeflate;
    /// let pmd = PermessageDeflate {
    ///     server_enable: true,
    ///     idle_release: Some(Duration::from_secs(10)),
    ///     ..Default::default()
    /// };
    /// # let _ = pmd;
    /// ```
    pub idle_release: Option<Duration>,
}

impl Default for PermessageDeflate {
    fn default() -> Self {
        PermessageDeflate {
            server_enable: false,
            client_enable: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            comp_level: 8,
            mem_level: 4,
            msg_size_threshold: 0,
            idle_release: None,
        }
    }
}

impl PermessageDeflate {
    /// Checks the ranges Beast checks in `set_option`: window bits 9..=15, `comp_level`
    /// 0..=9, `mem_level` 1..=9; anything else is [`Error::InvalidArgument`].
    ///
    /// ```
    /// use rbeast::{proto::deflate::PermessageDeflate, Error};
    /// let bad = PermessageDeflate { server_max_window_bits: 8, ..Default::default() };
    /// assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
    /// ```
    pub fn validate(&self) -> Result<()> {
        if !(9..=15).contains(&self.server_max_window_bits) {
            return Err(Error::InvalidArgument(ArgumentError::ServerMaxWindowBits));
        }
        if !(9..=15).contains(&self.client_max_window_bits) {
            return Err(Error::InvalidArgument(ArgumentError::ClientMaxWindowBits));
        }
        if self.comp_level > 9 {
            return Err(Error::InvalidArgument(ArgumentError::CompLevel));
        }
        if !(1..=9).contains(&self.mem_level) {
            return Err(Error::InvalidArgument(ArgumentError::MemLevel));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_beast() {
        let d = PermessageDeflate::default();
        assert!(!d.client_enable && !d.server_enable);
        assert_eq!(
            (d.server_max_window_bits, d.client_max_window_bits),
            (15, 15)
        );
        assert!(!d.server_no_context_takeover && !d.client_no_context_takeover);
        assert_eq!((d.comp_level, d.mem_level, d.msg_size_threshold), (8, 4, 0));
        assert_eq!(d.idle_release, None);
        d.validate().unwrap();
    }

    #[test]
    fn validation_bounds() {
        let ok = PermessageDeflate::default();
        for bits in 0..=255u8 {
            let s = PermessageDeflate {
                server_max_window_bits: bits,
                ..ok
            };
            let c = PermessageDeflate {
                client_max_window_bits: bits,
                ..ok
            };
            let want = (9..=15).contains(&bits);
            assert_eq!(s.validate().is_ok(), want, "server {bits}");
            assert_eq!(c.validate().is_ok(), want, "client {bits}");
        }
        for level in 0..=20u32 {
            let c = PermessageDeflate {
                comp_level: level,
                ..ok
            };
            assert_eq!(c.validate().is_ok(), level <= 9);
            let m = PermessageDeflate {
                mem_level: level,
                ..ok
            };
            assert_eq!(m.validate().is_ok(), (1..=9).contains(&level));
        }
    }
}
