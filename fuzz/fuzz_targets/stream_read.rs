//! Drives a whole `websocket::Stream` over the in-memory transport with hostile peer bytes.
//!
//! The first four bytes choose the role, whether permessage-deflate is negotiated (with the
//! peer's window bits and context takeover), `read_message_max`, the reads (`async_read`,
//! `async_read_some` with a small limit, or the two in turn) and how the peer's bytes
//! arrive (in pieces appended between turns of the context, the first one possibly with the
//! handshake, and the transport's largest read). A real opening handshake with a fixed
//! request (server) or response (client) comes first; the rest of the input is what the
//! peer sends after it, followed by the end of the stream.
//!
//! Reads are started until one fails. A reference decoder, written from RFC 6455 and
//! RFC 7692 with Beast's order of checks, says what the stream must do with the same bytes:
//! every message read is byte-identical to the reference's (a compressed one inflated by a
//! separate `Inflater` fed frame by frame); pings, pongs and the close frame reach the
//! control callback in order; the last read ends with the reference's result (`Closed`
//! with the peer's reason, `Eof`, or the protocol error, text being strict UTF-8); the
//! stream has sent a pong for every ping and nothing else but, when the read ended with an
//! error that has a close code, one close frame with that code (`Error::close_code`; the
//! peer's code, or 1000, in reply to a close). Only where the reference cannot know which
//! error a compressed message meets first (corrupt data, the size limit or invalid UTF-8,
//! depending on how the input is cut into inflate calls) is any of those accepted, from
//! that message on. Each read's buffer holds exactly the bytes the read reports, never more
//! than `read_message_max` or the `async_read_some` limit, and the memory allocated while
//! the stream runs stays within a fixed amount plus a small multiple of the input, of the
//! largest message and of what an uncompressed message announces (the rest of a large frame
//! is reserved in pieces of at most 1 MiB, within `read_message_max`).
#![no_main]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use rbeast::net::{FlatBuffer, IoContext};
use rbeast::proto::deflate::{Inflater, PermessageDeflate, INFLATE_CHUNK};
use rbeast::proto::handshake::accept_key;
use rbeast::websocket::{FrameType, Stream};
use rbeast::{test, Condition, Error, Role};

type Ws = Stream<test::Stream>;

// ------------------------------------------------------------------------- memory

#[path = "common/counting.rs"]
mod counting;
use counting::{LIVE, PEAK};
#[path = "common/reads.rs"]
mod reads;
use reads::Reads;

/// What a context, its lent read buffer, a zlib state and a read's inflate steps may
/// allocate beyond the input and the messages.
const FIXED_MEMORY: usize = 1 << 20;
/// A read buffer may have grown this much past twice the bytes it holds (one inflate step
/// of at most 64 KiB, the growth of a buffer that doubles).
const BUFFER_SLACK: usize = 256 * 1024;

/// The most the stream reserves at once for the payload of a large frame (read straight
/// into the caller's buffer, 1 MiB a piece).
const DIRECT_PIECE: usize = 1024 * 1024;

// ------------------------------------------------------------------------- the options

const MESSAGE_MAX: [u64; 8] = [0, 1, 16, 125, 300, 4096, 70_000, 16 * 1024 * 1024];
/// The transport's largest read.
const READ_SIZE: [usize; 8] = [usize::MAX, 1, 2, 3, 7, 64, 1000, 65_536];
/// The largest piece the peer's bytes arrive in (`usize::MAX`: all at once).
const PIECE: [usize; 8] = [usize::MAX, 1, 2, 5, 13, 100, 1500, 70_000];

#[derive(Debug, Clone, Copy)]
struct Deflate {
    /// The peer's window bits: what it compresses with.
    window_bits: u8,
    /// The peer resets its compressor after each message.
    no_context_takeover: bool,
    /// Our side resets its compressor after each message (negotiated, unused by reads).
    our_no_context_takeover: bool,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    role: Role,
    deflate: Option<Deflate>,
    message_max: u64,
    reads: Reads,
    read_size: usize,
    piece: usize,
    seed: u32,
    /// The first piece arrives together with the handshake.
    with_handshake: bool,
}

impl Config {
    fn parse(input: &[u8]) -> Option<(Config, &[u8])> {
        let (head, peer) = input.split_first_chunk::<4>()?;
        let [cfg, pmd, arrival, seed] = *head;
        let role = if cfg & 1 != 0 {
            Role::Server
        } else {
            Role::Client
        };
        // A server limits the client's window to 9..=15; a client accepts 8 in the reply.
        let window_bits = match role {
            Role::Server => (8 + (pmd & 7)).max(9),
            Role::Client => 8 + (pmd & 7),
        };
        let deflate = (cfg & 2 != 0).then_some(Deflate {
            window_bits,
            no_context_takeover: pmd & 8 != 0,
            our_no_context_takeover: pmd & 16 != 0,
        });
        let reads = match cfg >> 5 {
            0..=2 => Reads::Whole,
            3 => Reads::Some(0),
            4 => Reads::Some(1),
            5 => Reads::Some(3),
            6 => Reads::Some(200),
            _ => Reads::Alternate,
        };
        let config = Config {
            role,
            deflate,
            message_max: MESSAGE_MAX[usize::from(cfg >> 2 & 7)],
            reads,
            read_size: READ_SIZE[usize::from(arrival & 7)],
            piece: PIECE[usize::from(arrival >> 3 & 7)],
            seed: u32::from(seed) | u32::from(arrival) << 8 | u32::from(cfg) << 16,
            with_handshake: arrival & 0x40 != 0,
        };
        Some((config, peer))
    }

    /// The pieces the peer's bytes arrive in (allocating nothing: the memory counted is the
    /// stream's).
    fn pieces<'a>(&self, mut peer: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        let (max, mut seed) = (self.piece, self.seed);
        std::iter::from_fn(move || {
            if peer.is_empty() {
                return None;
            }
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let size = match max {
                usize::MAX => peer.len(),
                max => 1 + (seed >> 8) as usize % max,
            };
            let (piece, rest) = peer.split_at(size.min(peer.len()));
            peer = rest;
            Some(piece)
        })
    }
}

// ------------------------------------------------------------------------- the reference

/// What the application sees, in order: control frames through the control callback,
/// messages through the reads.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A valid close frame; its reason text.
    Close(Vec<u8>),
    Message {
        text: bool,
        data: Vec<u8>,
    },
}

/// How the last read ends.
#[derive(Debug, Clone, PartialEq)]
enum End {
    /// `Error::Closed`, with the peer's close code (0 for none) and reason.
    Closed {
        code: u16,
        reason: Vec<u8>,
    },
    Eof,
    Error(Error),
}

/// What the stream must do with the peer's bytes.
#[derive(Debug)]
struct Expect {
    events: Vec<Event>,
    /// The ends allowed once every event was seen.
    full: Vec<End>,
    /// The ends allowed after fewer events, at least `sure` of them (a compressed message
    /// whose error may be met earlier by the stream than by the reference).
    early: Vec<End>,
    sure: usize,
    /// The payload of the message in progress at the end, as far as the reference got.
    partial: Vec<u8>,
    /// The largest message (or part of one) the reference produced.
    biggest: usize,
    /// What the stream may reserve for an uncompressed message announced by its headers
    /// but not sent (yet): the rest of a large frame is read straight into the read's
    /// buffer, reserved 1 MiB at most at a time, within `read_message_max`.
    reserve: usize,
}

struct Header {
    fin: bool,
    rsv: [bool; 3],
    opcode: u8,
    len7: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Bytes of the header.
    size: usize,
}

impl Header {
    /// The header at the start of `b`, once all its bytes are in.
    fn parse(b: &[u8]) -> Option<Header> {
        let (&b0, &b1) = (b.first()?, b.get(1)?);
        let len7 = b1 & 0x7f;
        let masked = b1 & 0x80 != 0;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let size = 2 + ext + if masked { 4 } else { 0 };
        let b = b.get(..size)?;
        let len = match len7 {
            126 => u64::from(u16::from_be_bytes([b[2], b[3]])),
            127 => u64::from_be_bytes(b[2..10].try_into().unwrap()),
            n => u64::from(n),
        };
        let mask = masked.then(|| b[2 + ext..6 + ext].try_into().unwrap());
        Some(Header {
            fin: b0 & 0x80 != 0,
            rsv: [b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0],
            opcode: b0 & 0x0f,
            len7,
            mask,
            len,
            size,
        })
    }

    fn is_control(&self) -> bool {
        self.opcode >= 8
    }
}

fn unmask(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    match mask {
        Some(key) => payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect(),
        None => payload.to_vec(),
    }
}

/// Strict UTF-8 over a growing message: invalid as soon as no continuation could make it
/// valid.
#[derive(Default)]
struct Utf8 {
    checked: usize,
}

impl Utf8 {
    fn ok(&mut self, data: &[u8], end_of_message: bool) -> bool {
        match std::str::from_utf8(&data[self.checked..]) {
            Ok(_) => {
                self.checked = data.len();
                true
            }
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                self.checked += e.valid_up_to();
                !end_of_message
            }
        }
    }
}

/// What went wrong inside a compressed message.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    Corrupt,
    TooBig,
    Utf8,
}

/// The errors the stream may report for `fault`, met by the reference in a frame of a
/// compressed message (`last`: the message's last frame, all in). The stream inflates in
/// calls of its own sizes, and may leave output of one frame in the decompressor until the
/// next: it can meet another of these faults first, and without `last`, none before a
/// later frame.
fn doubts(fault: Fault, text: bool, max: u64, last: bool, inflated: usize) -> Vec<Error> {
    let mut set = Vec::new();
    let mut may = |yes: bool, e: Error| {
        if yes {
            set.push(e);
        }
    };
    // The reference drops the output of the inflate call that fails: up to one chunk.
    let near_max = max != 0 && (!last || (inflated + INFLATE_CHUNK) as u64 > max);
    match fault {
        Fault::Utf8 => {
            may(true, Error::BadFramePayload);
            may(!last, Error::BadDeflateData);
            may(!last && max != 0, Error::MessageTooBig);
        }
        Fault::Corrupt => {
            may(true, Error::BadDeflateData);
            may(text, Error::BadFramePayload);
            may(near_max, Error::MessageTooBig);
        }
        Fault::TooBig => {
            may(true, Error::MessageTooBig);
            may(true, Error::BadDeflateData);
            may(text, Error::BadFramePayload);
        }
    }
    set
}

/// A data message in progress in the reference.
struct Message {
    text: bool,
    compressed: bool,
    /// Payload bytes announced by its headers.
    announced: u64,
    /// The payload (inflated when compressed).
    data: Vec<u8>,
    utf8: Utf8,
    /// Events before it.
    start: usize,
}

/// The reference decoder: what a stream in `cfg.role` must make of `peer`.
fn reference(cfg: &Config, peer: &[u8]) -> Expect {
    let max = cfg.message_max;
    let limit = usize::try_from(max)
        .ok()
        .filter(|&m| m != 0)
        .unwrap_or(usize::MAX);
    let mut inflater = cfg
        .deflate
        .map(|d| Inflater::new(d.window_bits, d.no_context_takeover));
    let mut events = Vec::new();
    let mut message: Option<Message> = None;
    let mut biggest = 0;
    let mut announced = 0;
    // Set once a compressed message went wrong: the errors the stream may meet instead of
    // the reference's end, from that message's start on.
    let mut doubt: Option<(Vec<Error>, usize)> = None;
    let mut at = 0;
    let end = loop {
        let Some(h) = Header::parse(&peer[at..]) else {
            break End::Eof;
        };
        if let Err(e) = check(&h, cfg, message.as_ref(), max) {
            break End::Error(e);
        }
        at += h.size;
        let avail = (peer.len() - at).min(usize::try_from(h.len).unwrap_or(usize::MAX));
        if h.is_control() {
            // The stream waits for the whole payload.
            if (avail as u64) < h.len {
                break End::Eof;
            }
            let payload = unmask(&peer[at..at + avail], h.mask);
            at += avail;
            match h.opcode {
                0x9 => events.push(Event::Ping(payload)),
                0xA => events.push(Event::Pong(payload)),
                _ => match parse_close(&payload) {
                    Ok((code, reason)) => {
                        events.push(Event::Close(reason.clone()));
                        break End::Closed { code, reason };
                    }
                    Err(e) => break End::Error(e),
                },
            }
            continue;
        }
        if h.opcode != 0 {
            message = Some(Message {
                text: h.opcode == 1,
                compressed: h.rsv[0],
                announced: 0,
                data: Vec::new(),
                utf8: Utf8::default(),
                start: events.len(),
            });
        }
        let Some(m) = message.as_mut() else {
            unreachable!("check() lets a continuation through only inside a message");
        };
        m.announced += h.len;
        if !m.compressed {
            announced = announced.max(m.announced);
        }
        let payload = unmask(&peer[at..at + avail], h.mask);
        at += avail;
        let whole = avail as u64 == h.len;
        let last = h.fin && whole;
        if doubt.is_none() {
            let fault = if m.compressed {
                let inflater = inflater
                    .as_mut()
                    .expect("RSV1 only with permessage-deflate");
                match inflater.inflate(&payload, last, &mut m.data, limit) {
                    Ok(_) if m.text && !m.utf8.ok(&m.data, last) => Some(Fault::Utf8),
                    Ok(_) => None,
                    Err(Error::BadDeflateData) => Some(Fault::Corrupt),
                    Err(Error::MessageTooBig) => Some(Fault::TooBig),
                    Err(e) => panic!("the reference inflater failed with {e:?}"),
                }
            } else {
                m.data.extend_from_slice(&payload);
                if m.text && !m.utf8.ok(&m.data, last) {
                    biggest = biggest.max(m.data.len());
                    break End::Error(Error::BadFramePayload);
                }
                None
            };
            biggest = biggest.max(m.data.len());
            if let Some(fault) = fault {
                let set = doubts(fault, m.text, max, last, m.data.len());
                doubt = Some((set, m.start));
            }
        }
        if !whole {
            break End::Eof;
        }
        if h.fin {
            if let Some((set, _)) = &doubt {
                break End::Error(set[0].clone());
            }
            let m = message.take().unwrap();
            events.push(Event::Message {
                text: m.text,
                data: m.data,
            });
        }
    };
    let partial = message.map(|m| m.data).unwrap_or_default();
    // A large frame's payload is reserved in pieces of at most `DIRECT_PIECE` (within
    // `read_message_max`, which the headers' total was already cut to).
    let reserve = usize::try_from(announced)
        .unwrap_or(usize::MAX)
        .min(DIRECT_PIECE);
    match doubt {
        None => Expect {
            sure: events.len(),
            events,
            full: vec![end],
            early: Vec::new(),
            partial,
            biggest,
            reserve,
        },
        Some((set, sure)) => {
            let early: Vec<End> = set.into_iter().map(End::Error).collect();
            let mut full = early.clone();
            if !full.contains(&end) {
                full.push(end);
            }
            Expect {
                events,
                full,
                early,
                sure,
                partial,
                biggest,
                reserve,
            }
        }
    }
}

/// The checks on a header, in Beast's order.
fn check(h: &Header, cfg: &Config, message: Option<&Message>, max: u64) -> Result<(), Error> {
    let [rsv1, rsv2, rsv3] = h.rsv;
    let pmd = cfg.deflate.is_some();
    match h.opcode {
        0x1 | 0x2 => {
            if message.is_some() {
                return Err(Error::BadDataFrame);
            }
            if rsv2 || rsv3 || (rsv1 && !pmd) {
                return Err(Error::BadReservedBits);
            }
        }
        0x0 => {
            if message.is_none() {
                return Err(Error::BadContinuation);
            }
            if rsv1 || rsv2 || rsv3 {
                return Err(Error::BadReservedBits);
            }
        }
        0x8..=0xA => {
            if !h.fin {
                return Err(Error::BadControlFragment);
            }
            if h.len7 > 125 {
                return Err(Error::BadControlSize);
            }
            if rsv1 || rsv2 || rsv3 {
                return Err(Error::BadReservedBits);
            }
        }
        _ => return Err(Error::BadOpcode),
    }
    match (cfg.role, h.mask.is_some()) {
        (Role::Server, false) => return Err(Error::BadUnmaskedFrame),
        (Role::Client, true) => return Err(Error::BadMaskedFrame),
        _ => {}
    }
    if (h.len7 == 126 && h.len < 126) || (h.len7 == 127 && !(65536..1 << 63).contains(&h.len)) {
        return Err(Error::BadSize);
    }
    if !h.is_control() {
        let (so_far, compressed) = match (h.opcode, message) {
            (0, Some(m)) => (m.announced, m.compressed),
            _ => (0, rsv1),
        };
        let total = so_far.checked_add(h.len).ok_or(Error::MessageTooBig)?;
        if !compressed && max != 0 && total > max {
            return Err(Error::MessageTooBig);
        }
    }
    Ok(())
}

/// A close frame's payload: the code (0 for none) and the reason.
fn parse_close(payload: &[u8]) -> Result<(u16, Vec<u8>), Error> {
    match payload {
        [] => Ok((0, Vec::new())),
        [_] => Err(Error::BadCloseSize),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(Error::BadCloseCode);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(Error::BadClosePayload);
            }
            Ok((code, reason.to_vec()))
        }
    }
}

// ------------------------------------------------------------------------- the stream

/// Runs the context until it has nothing left to do.
fn settle(ctx: &IoContext) {
    let mut idle = 0;
    for _ in 0..100_000 {
        if ctx.poll() == 0 {
            idle += 1;
            if idle == 2 {
                return;
            }
        } else {
            idle = 0;
        }
    }
    panic!("the context never went idle");
}

/// The value of the header field `name` in an HTTP head.
fn field(head: &[u8], name: &str) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A stream in `cfg.role` after a handshake with the fixed peer, `first` arriving right
/// after the peer's handshake bytes.
fn open(ctx: &IoContext, cfg: &Config, first: &[u8]) -> Ws {
    let ws = Stream::new(test::Stream::new(ctx));
    ws.set_read_message_max(cfg.message_max);
    ws.next_layer().read_size(cfg.read_size);
    let done = Rc::new(RefCell::new(None));
    let d = done.clone();
    let mut peer = Vec::new();
    match cfg.role {
        Role::Server => {
            if let Some(p) = cfg.deflate {
                ws.set_permessage_deflate(PermessageDeflate {
                    server_enable: true,
                    client_max_window_bits: p.window_bits,
                    client_no_context_takeover: p.no_context_takeover,
                    server_no_context_takeover: p.our_no_context_takeover,
                    ..Default::default()
                })
                .unwrap();
            }
            ws.async_accept(move |r| *d.borrow_mut() = Some(r));
            peer.extend_from_slice(
                b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n",
            );
            peer.extend_from_slice(format!("Sec-WebSocket-Key: {KEY}\r\n").as_bytes());
            if cfg.deflate.is_some() {
                peer.extend_from_slice(
                    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
                );
            }
            peer.extend_from_slice(b"\r\n");
            peer.extend_from_slice(first);
            ws.next_layer().append(&peer);
            settle(ctx);
            let response = ws.next_layer().take_output();
            assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
            assert_eq!(
                field(&response, "sec-websocket-accept").as_deref(),
                Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            );
        }
        Role::Client => {
            if let Some(p) = cfg.deflate {
                ws.set_permessage_deflate(PermessageDeflate {
                    client_enable: true,
                    server_max_window_bits: p.window_bits.max(9),
                    server_no_context_takeover: p.no_context_takeover,
                    client_no_context_takeover: p.our_no_context_takeover,
                    ..Default::default()
                })
                .unwrap();
            }
            ws.async_handshake("server.example.com", "/chat", move |r| {
                *d.borrow_mut() = Some(r)
            });
            settle(ctx);
            let request = ws.next_layer().take_output();
            let key = field(&request, "sec-websocket-key").expect("the request has a key");
            peer.extend_from_slice(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
            );
            let accept = accept_key(&key);
            peer.extend_from_slice(format!("Sec-WebSocket-Accept: {accept}\r\n").as_bytes());
            if let Some(p) = cfg.deflate {
                let mut reply = format!(
                    "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits={}",
                    p.window_bits
                );
                if p.no_context_takeover {
                    reply.push_str("; server_no_context_takeover");
                }
                if p.our_no_context_takeover {
                    reply.push_str("; client_no_context_takeover");
                }
                reply.push_str("\r\n");
                peer.extend_from_slice(reply.as_bytes());
            }
            peer.extend_from_slice(b"\r\n");
            peer.extend_from_slice(first);
            ws.next_layer().append(&peer);
            settle(ctx);
            assert!(ws.next_layer().take_output().is_empty());
        }
    }
    assert_eq!(done.take(), Some(Ok(())), "the handshake succeeded");
    assert!(ws.is_open());
    let status = ws.permessage_deflate_status();
    assert_eq!(status.active, cfg.deflate.is_some());
    if let Some(p) = cfg.deflate {
        let windows = (status.client_window_bits, status.server_window_bits);
        match cfg.role {
            Role::Server => assert_eq!(windows, (p.window_bits, 15)),
            Role::Client => assert_eq!(windows, (15, p.window_bits)),
        }
    }
    ws
}

/// What the reads and the control callback saw, checked against the reference as it
/// arrives.
struct Seen {
    cfg: Config,
    expect: Rc<Expect>,
    /// Events seen so far.
    events: usize,
    /// Reads completed.
    reads: usize,
    /// The message in progress, as read so far, and its kind.
    pieces: Vec<u8>,
    text: Option<bool>,
    /// Pings seen (the stream answers each).
    pings: usize,
    end: Option<Error>,
}

impl Seen {
    fn event(&mut self, got: Event) {
        let want = self.expect.events.get(self.events);
        assert_eq!(
            want,
            Some(&got),
            "event {} differs from the reference",
            self.events
        );
        self.events += 1;
    }

    fn on_control(&mut self, kind: FrameType, payload: &[u8]) {
        let payload = payload.to_vec();
        match kind {
            FrameType::Ping => {
                self.pings += 1;
                self.event(Event::Ping(payload));
            }
            FrameType::Pong => self.event(Event::Pong(payload)),
            FrameType::Close => self.event(Event::Close(payload)),
        }
    }

    /// A read completed; true when the next one is to be started.
    fn on_read(
        &mut self,
        ws: &Ws,
        buffer: &FlatBuffer,
        (whole, limit): (bool, usize),
        r: Result<(), Error>,
        n: usize,
    ) -> bool {
        self.reads += 1;
        assert_eq!(
            buffer.size(),
            n,
            "the buffer holds the bytes the read reports"
        );
        if !whole && limit != 0 {
            assert!(n <= limit, "read_some({limit}) delivered {n} bytes");
        }
        let max = self.cfg.message_max;
        assert!(
            max == 0 || n as u64 <= max,
            "{n} bytes past read_message_max {max}"
        );
        assert!(
            // A reservation past the capacity grows the buffer by doubling.
            buffer.capacity() <= 2 * (n + self.expect.reserve) + BUFFER_SLACK,
            "a buffer of {} bytes for {n} read",
            buffer.capacity()
        );
        self.pieces.extend_from_slice(&buffer.data());
        if n > 0 || r.is_ok() {
            let text = ws.got_text();
            assert_eq!(
                *self.text.get_or_insert(text),
                text,
                "the message changed kind"
            );
        }
        match r {
            Ok(()) => {
                if whole {
                    assert!(ws.is_message_done(), "async_read ends with the message");
                }
                if ws.is_message_done() {
                    let data = std::mem::take(&mut self.pieces);
                    let text = self.text.take().unwrap();
                    self.event(Event::Message { text, data });
                } else {
                    assert!(n > 0, "a read that ends no message delivers something");
                }
                true
            }
            Err(e) => {
                self.end = Some(e);
                false
            }
        }
    }
}

fn read_next(ws: &Ws, seen: &Rc<RefCell<Seen>>) {
    let how = {
        let s = seen.borrow();
        s.cfg.reads.nth(s.reads)
    };
    let buffer = FlatBuffer::new();
    let (w, s, b) = (ws.clone(), seen.clone(), buffer.clone());
    let handler = move |r, n| {
        if s.borrow_mut().on_read(&w, &b, how, r, n) {
            read_next(&w, &s);
        }
    };
    reads::start(ws, &buffer, how, handler);
}

/// The frames the stream sent: the pongs' payloads and the close frame's, if any.
fn sent(out: &[u8], role: Role) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let (mut pongs, mut close) = (Vec::new(), None);
    let mut at = 0;
    while at < out.len() {
        assert!(close.is_none(), "nothing after the close frame");
        assert!(out.len() - at >= 2, "a whole frame header");
        let (b0, b1) = (out[at], out[at + 1]);
        assert!(
            b0 == 0x8A || b0 == 0x88,
            "a pong or a close frame, not {b0:#04x}"
        );
        assert_eq!(
            b1 & 0x80 != 0,
            role == Role::Client,
            "masked by a client only"
        );
        let len = usize::from(b1 & 0x7f);
        assert!(len <= 125);
        at += 2;
        let mask = (role == Role::Client).then(|| {
            assert!(out.len() - at >= 4, "a whole mask key");
            let key: [u8; 4] = out[at..at + 4].try_into().unwrap();
            at += 4;
            key
        });
        assert!(out.len() - at >= len, "a whole frame payload");
        let payload = unmask(&out[at..at + len], mask);
        at += len;
        if b0 == 0x8A {
            pongs.push(payload);
        } else {
            close = Some(payload);
        }
    }
    (pongs, close)
}

/// Runs the stream over `peer` and checks it against `expect`.
fn run(cfg: &Config, peer: &[u8], expect: Rc<Expect>) {
    let ctx = IoContext::new().unwrap();
    let mut pieces = cfg.pieces(peer);
    let first = if cfg.with_handshake {
        pieces.next().unwrap_or_default()
    } else {
        &[]
    };
    let ws = open(&ctx, cfg, first);
    let seen = Rc::new(RefCell::new(Seen {
        cfg: *cfg,
        expect: expect.clone(),
        events: 0,
        reads: 0,
        pieces: Vec::new(),
        text: None,
        pings: 0,
        end: None,
    }));
    let s = seen.clone();
    ws.set_control_callback(move |kind, payload| s.borrow_mut().on_control(kind, payload));
    read_next(&ws, &seen);
    settle(&ctx);
    for piece in pieces {
        ws.next_layer().append(piece);
        settle(&ctx);
    }
    ws.next_layer().close_remote();
    settle(&ctx);
    ws.clear_control_callback();

    let seen = seen.borrow();
    let error = seen.end.clone().expect("the last read completed");
    assert!(!ws.is_open());
    let end = match error {
        Error::Closed => {
            let reason = ws.reason();
            End::Closed {
                code: reason.code.0,
                reason: reason.reason().as_bytes().to_vec(),
            }
        }
        Error::Eof => End::Eof,
        e => {
            assert!(
                e == Error::MessageTooBig || e.condition() == Some(Condition::ProtocolViolation),
                "the read ended with {e:?}"
            );
            End::Error(e)
        }
    };
    if seen.events == expect.events.len() {
        assert!(
            expect.full.contains(&end),
            "ended with {end:?}, not one of {:?}",
            expect.full
        );
    } else {
        assert!(
            seen.events >= expect.sure && expect.early.contains(&end),
            "ended with {end:?} after {} of {} events ({} sure), not one of {:?}",
            seen.events,
            expect.events.len(),
            expect.sure,
            expect.early
        );
    }
    let common = seen.pieces.len().min(expect.partial.len());
    assert!(
        seen.pieces[..common] == expect.partial[..common],
        "the unfinished message differs from the reference"
    );

    let (pongs, close) = sent(&ws.next_layer().take_output(), cfg.role);
    let pings: Vec<&Vec<u8>> = expect
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ping(payload) => Some(payload),
            _ => None,
        })
        .take(seen.pings)
        .collect();
    assert!(pongs.iter().eq(pings), "a pong for every ping");
    let code = match &end {
        End::Closed { code: 0, .. } => Some(1000),
        End::Closed { code, .. } => Some(*code),
        End::Eof => None,
        End::Error(e) => e.close_code(),
    };
    assert_eq!(
        close,
        code.map(|c| c.to_be_bytes().to_vec()),
        "the close frame sent for {end:?}"
    );

    // The error went to the last read; later ones are aborted.
    let after = Rc::new(RefCell::new(None));
    let a = after.clone();
    ws.async_read(&FlatBuffer::new(), move |r, n| {
        *a.borrow_mut() = Some((r, n))
    });
    settle(&ctx);
    assert_eq!(after.take(), Some((Err(Error::OperationAborted), 0)));
}

fuzz_target!(|input: &[u8]| {
    let Some((cfg, peer)) = Config::parse(input) else {
        return;
    };
    let expect = Rc::new(reference(&cfg, peer));
    let (biggest, reserve) = (expect.biggest, expect.reserve);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    run(&cfg, peer, expect);
    let used = PEAK.load(Ordering::Relaxed) - base;
    let bound = FIXED_MEMORY + 4 * peer.len() + 4 * biggest + 2 * reserve;
    assert!(
        used <= bound,
        "{used} bytes allocated at the peak, for {} input bytes, messages of {biggest} \
         and {reserve} announced",
        peer.len()
    );
});
