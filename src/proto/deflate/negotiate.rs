//! permessage-deflate negotiation (RFC 7692 §7.1) with Beast's rules.

use std::borrow::Cow;

use super::extension::{parse_list, Extension};
use super::PermessageDeflate;
use crate::{Error, Result};

/// The registered name of the extension.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The permessage-deflate parameters agreed by a handshake (normalised: absent window bits
/// are 15).
///
/// ```
/// let p = rbeast::proto::deflate::PmdParams::default();
/// assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (15, 15));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmdParams {
    /// The server's LZ77 window (the server compresses, the client inflates, with it).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window.
    pub client_max_window_bits: u8,
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
}

impl Default for PmdParams {
    fn default() -> Self {
        PmdParams {
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
}

/// Beast's `permessage_deflate_status`: whether compression is on, and its windows.
///
/// ```
/// use rbeast::proto::deflate::{PermessageDeflateStatus, PmdParams};
/// let off = PermessageDeflateStatus::from(None);
/// assert!(!off.active);
/// let on = PermessageDeflateStatus::from(Some(PmdParams::default()));
/// assert!(on.active && on.server_window_bits == 15);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PermessageDeflateStatus {
    /// permessage-deflate was negotiated.
    pub active: bool,
    /// The client's window bits (0 when not active).
    pub client_window_bits: u8,
    /// The server's window bits (0 when not active).
    pub server_window_bits: u8,
}

impl From<Option<PmdParams>> for PermessageDeflateStatus {
    fn from(p: Option<PmdParams>) -> Self {
        match p {
            None => PermessageDeflateStatus::default(),
            Some(p) => PermessageDeflateStatus {
                active: true,
                client_window_bits: p.client_max_window_bits,
                server_window_bits: p.server_max_window_bits,
            },
        }
    }
}

/// Window bits as Beast reads them: one or two digits, no leading zero.
fn parse_bits(s: &str) -> Option<u8> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 2 || !(b'1'..=b'9').contains(&b[0]) {
        return None;
    }
    s.parse().ok()
}

/// Window bits parameter in an offer: absent, present without a value, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bits {
    Absent,
    NoValue,
    Value(u8),
}

/// One permessage-deflate element read with Beast's offer rules.
#[derive(Debug, Clone, Copy)]
struct Offer {
    server_bits: Bits,
    client_bits: Bits,
    server_nct: bool,
    client_nct: bool,
}

type Params<'a> = [(&'a str, Option<Cow<'a, str>>)];

/// Reads an offer; `None` means it must be declined (duplicate or unknown parameter, a
/// value out of 8..=15, a missing `server_max_window_bits` value, a value on a
/// `*_no_context_takeover`).
fn read_offer(params: &Params<'_>) -> Option<Offer> {
    let mut o = Offer {
        server_bits: Bits::Absent,
        client_bits: Bits::Absent,
        server_nct: false,
        client_nct: false,
    };
    for (name, value) in params {
        let value = value.as_deref();
        let bits = |v: &str| parse_bits(v).filter(|b| (8..=15).contains(b));
        if name.eq_ignore_ascii_case("server_max_window_bits") {
            if o.server_bits != Bits::Absent {
                return None;
            }
            o.server_bits = Bits::Value(bits(value?)?);
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            if o.client_bits != Bits::Absent {
                return None;
            }
            o.client_bits = match value {
                None => Bits::NoValue,
                Some(v) => Bits::Value(bits(v)?),
            };
        } else if name.eq_ignore_ascii_case("server_no_context_takeover") {
            if o.server_nct || value.is_some() {
                return None;
            }
            o.server_nct = true;
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            if o.client_nct || value.is_some() {
                return None;
            }
            o.client_nct = true;
        } else {
            return None;
        }
    }
    Some(o)
}

/// Beast's server-side negotiation of one valid offer: the parameters and the reply, or
/// `None` when the offer must be declined.
fn negotiate_one(offer: &Offer, ours: &PermessageDeflate) -> Option<(PmdParams, String)> {
    let mut reply = String::from(EXTENSION_NAME);
    let server_nct = offer.server_nct || ours.server_no_context_takeover;
    if server_nct {
        reply.push_str("; server_no_context_takeover");
    }
    let client_nct = offer.client_nct || ours.client_no_context_takeover;
    if client_nct {
        reply.push_str("; client_no_context_takeover");
    }
    let mut server_bits = match offer.server_bits {
        Bits::Value(v) => v.min(ours.server_max_window_bits),
        _ => ours.server_max_window_bits,
    };
    if server_bits < 15 {
        // zlib cannot deflate with an 8-bit window: use (and announce) 9 instead.
        server_bits = server_bits.max(9);
        reply.push_str(&format!("; server_max_window_bits={server_bits}"));
    }
    let client_bits = match offer.client_bits {
        Bits::NoValue => {
            if ours.client_max_window_bits < 15 {
                reply.push_str(&format!(
                    "; client_max_window_bits={}",
                    ours.client_max_window_bits
                ));
            }
            ours.client_max_window_bits
        }
        // RFC 7692 §7.1.2.2: without the parameter the reply must not limit the client, so
        // a server that wants a smaller client window declines.
        Bits::Absent if ours.client_max_window_bits == 15 => 15,
        Bits::Absent => return None,
        Bits::Value(v) => {
            let bits = v.min(ours.client_max_window_bits);
            reply.push_str(&format!("; client_max_window_bits={bits}"));
            bits
        }
    };
    let params = PmdParams {
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
    };
    Some((params, reply))
}

/// Server side: picks the first acceptable permessage-deflate offer among the values of
/// every `Sec-WebSocket-Extensions` field of a request, and returns the agreed parameters
/// with the value of the `Sec-WebSocket-Extensions` reply.
///
/// Returns `None` when `server_enable` is off or no offer is acceptable; invalid offers are
/// declined silently, as in Beast (which looks only at the first permessage-deflate
/// element; here a later acceptable one is used).
///
/// ```
/// use rbeast::proto::deflate::{negotiate, PermessageDeflate};
/// let ours = PermessageDeflate { server_enable: true, server_max_window_bits: 10, ..Default::default() };
/// let offer = "permessage-deflate; client_max_window_bits";
/// let (params, reply) = negotiate(&ours, [offer.as_bytes()]).unwrap();
/// assert_eq!(reply, "permessage-deflate; server_max_window_bits=10");
/// assert_eq!(params.server_max_window_bits, 10);
/// ```
pub fn negotiate<'a, I>(ours: &PermessageDeflate, offers: I) -> Option<(PmdParams, String)>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    if !ours.server_enable {
        return None;
    }
    offers.into_iter().find_map(|value| {
        parse_list(value).into_iter().flatten().find_map(|ext| {
            if !ext.name.eq_ignore_ascii_case(EXTENSION_NAME) {
                return None;
            }
            read_offer(&ext.params).and_then(|o| negotiate_one(&o, ours))
        })
    })
}

/// Client side: the `Sec-WebSocket-Extensions` offer for our options, or `None` when
/// `client_enable` is off. Like Beast it states both window sizes explicitly.
///
/// ```
/// use rbeast::proto::deflate::{client_offer, PermessageDeflate};
/// let ours = PermessageDeflate { client_enable: true, ..Default::default() };
/// assert_eq!(
///     client_offer(&ours).unwrap(),
///     "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15"
/// );
/// ```
pub fn client_offer(ours: &PermessageDeflate) -> Option<String> {
    if !ours.client_enable {
        return None;
    }
    let mut s = format!(
        "{EXTENSION_NAME}; server_max_window_bits={}; client_max_window_bits={}",
        ours.server_max_window_bits, ours.client_max_window_bits
    );
    if ours.server_no_context_takeover {
        s.push_str("; server_no_context_takeover");
    }
    if ours.client_no_context_takeover {
        s.push_str("; client_no_context_takeover");
    }
    Some(s)
}

/// Reads the parameters from the `Sec-WebSocket-Extensions` values of a response the way
/// Beast configures itself: the first permessage-deflate element, read with the offer
/// rules, then normalised. Used by a server on its own final response (after the
/// decorator), so the configuration always matches what was sent.
///
/// ```
/// use rbeast::proto::deflate::read_params;
/// let p = read_params([&b"permessage-deflate; server_max_window_bits=9"[..]]).unwrap();
/// assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (9, 15));
/// assert!(read_params([&b"x-other"[..]]).is_none());
/// ```
pub fn read_params<'a, I>(values: I) -> Option<PmdParams>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let first = values.into_iter().find_map(|value| {
        parse_list(value)
            .into_iter()
            .flatten()
            .find(|e| e.name.eq_ignore_ascii_case(EXTENSION_NAME))
            .map(|e| read_offer(&e.params))
    })??;
    Some(normalise(&first))
}

fn normalise(o: &Offer) -> PmdParams {
    let bits = |b: Bits| match b {
        Bits::Value(v) => v,
        _ => 15,
    };
    PmdParams {
        server_max_window_bits: bits(o.server_bits),
        client_max_window_bits: bits(o.client_bits),
        server_no_context_takeover: o.server_nct,
        client_no_context_takeover: o.client_nct,
    }
}

/// Client side (beyond Beast, which accepts any reply): checks the server's
/// `Sec-WebSocket-Extensions` values against the offer made with `ours`, and returns the
/// agreed parameters (`None` when the server did not accept permessage-deflate).
///
/// The reply must name only permessage-deflate, once, and only if we offered it; it may
/// not repeat, invent or leave out values (`server_max_window_bits` is required when we
/// offered less than 15, `server_no_context_takeover` when we offered it); window bits must
/// be 8..=15 and no larger than offered. Anything else is [`Error::BadExtensionReply`].
///
/// ```
/// use rbeast::{proto::deflate::{check_reply, PermessageDeflate}, Error};
/// let ours = PermessageDeflate { client_enable: true, ..Default::default() };
/// let p = check_reply(&ours, [&b"permessage-deflate; client_max_window_bits=10"[..]])?.unwrap();
/// assert_eq!(p.client_max_window_bits, 10);
/// assert_eq!(check_reply(&ours, [&b"x-webkit-deflate"[..]]), Err(Error::BadExtensionReply));
/// # Ok::<(), Error>(())
/// ```
pub fn check_reply<'a, I>(ours: &PermessageDeflate, values: I) -> Result<Option<PmdParams>>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut found: Option<PmdParams> = None;
    for value in values {
        for ext in parse_list(value) {
            let ext = ext.ok_or(Error::BadExtensionReply)?;
            if !ours.client_enable
                || !ext.name.eq_ignore_ascii_case(EXTENSION_NAME)
                || found.is_some()
            {
                return Err(Error::BadExtensionReply);
            }
            found = Some(check_reply_params(ours, &ext)?);
        }
    }
    Ok(found)
}

fn check_reply_params(ours: &PermessageDeflate, ext: &Extension<'_>) -> Result<PmdParams> {
    let bad = Err(Error::BadExtensionReply);
    let (mut server_bits, mut client_bits) = (None, None);
    let (mut server_nct, mut client_nct) = (false, false);
    for (name, value) in &ext.params {
        let value = value.as_deref();
        let bits = |v: Option<&str>, max: u8| {
            v.and_then(parse_bits)
                .filter(|b| (8..=max).contains(b))
                .ok_or(Error::BadExtensionReply)
        };
        if name.eq_ignore_ascii_case("server_max_window_bits") {
            if server_bits.is_some() {
                return bad;
            }
            server_bits = Some(bits(value, ours.server_max_window_bits)?);
        } else if name.eq_ignore_ascii_case("client_max_window_bits") {
            if client_bits.is_some() {
                return bad;
            }
            client_bits = Some(bits(value, ours.client_max_window_bits)?);
        } else if name.eq_ignore_ascii_case("server_no_context_takeover") {
            if server_nct || value.is_some() {
                return bad;
            }
            server_nct = true;
        } else if name.eq_ignore_ascii_case("client_no_context_takeover") {
            if client_nct || value.is_some() {
                return bad;
            }
            client_nct = true;
        } else {
            return bad;
        }
    }
    if (server_bits.is_none() && ours.server_max_window_bits < 15)
        || (ours.server_no_context_takeover && !server_nct)
    {
        return bad;
    }
    Ok(PmdParams {
        server_max_window_bits: server_bits.unwrap_or(15),
        // Our offer's value is a limit we keep even when the server does not repeat it.
        client_max_window_bits: client_bits.unwrap_or(ours.client_max_window_bits),
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct || ours.client_no_context_takeover,
    })
}
