//! Drives the write side of a connected pair of `websocket::Stream`s with a program of
//! operations: whole messages, messages in parts, pings and pongs, and turns of the context
//! between them.
//!
//! The first four bytes choose which side writes (a client masks its frames, a server
//! does not), whether permessage-deflate is negotiated (with the writer's window bits,
//! context takeover, compression level and size threshold), `write_buffer_bytes`,
//! auto-fragment, the writer transport's largest write and its capacity (the bytes it
//! may leave unread before writes wait, as a socket's buffers), the reader transport's
//! largest read, the reads (`async_read`, `async_read_some` with a small limit, or the
//! two in turn), the mask generator, and the seed of the payloads. A real opening
//! handshake comes first (the client's `async_handshake`, the server's `async_accept`).
//! The rest of the input is the writer's program: parts of messages with or without fin
//! (`async_write` for a message in one part, `async_write_some` otherwise), text or
//! binary, of sizes from 0 to about 384 KiB; pings and pongs with payloads of 0 to 125
//! bytes; turns of the context (`poll`, `poll_one`) and runs to idle; toggles of
//! compression and auto-fragment; changes of `write_buffer_bytes` between any two
//! calls, in a message or not; and a close started at once, which ends the program (the
//! last write may still be outstanding and its message unfinished). A write starts only
//! after the handler of the previous one ran, except that a write may be followed at
//! once by the next one, which must then complete with `AlreadyStarted` (and be started
//! again later) or be taken whole (without a capacity `test::Stream` takes every write
//! call whole, so a write's frames are queued before its call returns and the next one
//! is normally taken; with one, writes wait for the reader). The total payload is up to
//! 2 MiB, less where each byte is slow to move with the options and the frame size in
//! force. Payload bytes come from the seed, not from the input; text is valid UTF-8 as
//! a whole message and its parts are cut at any byte.
//!
//! The receiving side reads all the time. Every message must arrive byte for byte, with its
//! kind (`got_binary`), ending exactly where the writer's fin was, in order; every write
//! handler runs exactly once, with `Ok` and the length of its part (a second write that met
//! an outstanding one: `AlreadyStarted` and 0); pings and pongs reach the reader's control
//! callback in order, with their payloads, after the messages finished before them were
//! sent and before those started after them; their handlers run once with `Ok`. Then the
//! writer closes, if the program did not: the close completes `Ok` (after a write it met
//! outstanding, which completes whole), the reader's read ends with `Closed` and code 1000
//! (having delivered what was taken of an unfinished message, all of it unless it is
//! compressed), its control callback sees the close frame last, and later writes and pings
//! are aborted, as is a later read, and nothing is left to run once the streams are
//! dropped. The memory allocated while the pair runs stays within a fixed amount plus small
//! multiples of the largest message, of the largest write on the wire with the highest
//! high-water mark of the output, and of the bytes in flight between the two transports.
#![no_main]

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rbeast::net::{FlatBuffer, IoContext};
use rbeast::proto::close::CloseCode;
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::websocket::{FrameType, Stream};
use rbeast::{test, ArgumentError, Error, Role};

type Ws = Stream<test::Stream>;

// ------------------------------------------------------------------------- memory

#[path = "common/counting.rs"]
mod counting;
use counting::{LIVE, PEAK};
#[path = "common/reads.rs"]
mod reads;
use reads::Reads;

/// What the pair may allocate whatever the messages: the context and its lent buffers, the
/// transports, the zlib states (a compressor of up to about 270 KiB, an inflater of about
/// 40 KiB, a message of 127 bytes compressed takes about 480 KiB in all) and this target's
/// records of the run.
const FIXED_MEMORY: usize = 1 << 20;

// ------------------------------------------------------------------------- the options

/// `write_buffer_bytes`; 7 is refused (the setter takes at least 8) and leaves 4096.
const WRITE_BUFFER_BYTES: [usize; 8] = [7, 8, 125, 126, 1000, 4096, 65_535, 65_536];
/// The writer transport's largest write.
const WRITE_SIZE: [usize; 8] = [usize::MAX, 1, 3, 100, 1500, 4096, 65_536, 200_000];
/// The writer transport's capacity, when bounded: writes wait while this many bytes are
/// unread.
const CAPACITY: [usize; 4] = [10, 1000, 8192, 100_000];
/// The reader transport's largest read.
const READ_SIZE: [usize; 8] = [usize::MAX, 1, 3, 64, 1000, 4096, 65_536, 200_000];
const COMP_LEVEL: [u32; 4] = [8, 0, 1, 9];
/// The most payload a program writes, and the least it may be cut to (see
/// [`Config::ns_per_byte`]).
const TOTAL_MAX: usize = 2 << 20;
const TOTAL_MIN: usize = 16 * 1024;
/// The time an input may take to move its payload, in nanoseconds (with the sanitizer):
/// long runs make fewer, shorter inputs, not better ones.
const BUDGET_NS: usize = 64_000_000;

#[derive(Debug, Clone, Copy)]
struct Deflate {
    /// The writer's window bits.
    window_bits: u8,
    /// The writer resets its compressor after each message.
    no_context_takeover: bool,
    comp_level: u32,
    /// `msg_size_threshold`.
    threshold: usize,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    writer: Role,
    deflate: Option<Deflate>,
    write_buffer_bytes: usize,
    auto_fragment: bool,
    write_size: usize,
    read_size: usize,
    reads: Reads,
    secure_prng: bool,
    /// The bytes the writer's transport may leave unread by the reader's (none: no bound).
    capacity: Option<usize>,
    seed: u64,
}

impl Config {
    fn parse(input: &[u8]) -> Option<(Config, &[u8])> {
        let (head, program) = input.split_first_chunk::<4>()?;
        let [b0, b1, b2, b3] = *head;
        let writer = if b0 & 1 != 0 {
            Role::Client
        } else {
            Role::Server
        };
        let window = b2 >> 3 & 7;
        let deflate = (b0 & 2 != 0).then_some(Deflate {
            window_bits: if window == 7 { 15 } else { 9 + window },
            no_context_takeover: b0 & 4 != 0,
            comp_level: COMP_LEVEL[usize::from(b1 >> 6)],
            threshold: if b0 & 0x80 != 0 { 64 } else { 0 },
        });
        let reads = match b2 & 7 {
            0 | 1 => Reads::Whole,
            2 => Reads::Some(0),
            3 => Reads::Some(1),
            4 => Reads::Some(3),
            5 => Reads::Some(200),
            6 => Reads::Some(5000),
            _ => Reads::Alternate,
        };
        let config = Config {
            writer,
            deflate,
            write_buffer_bytes: WRITE_BUFFER_BYTES[usize::from(b0 >> 3 & 7)],
            auto_fragment: b0 & 0x40 == 0,
            write_size: WRITE_SIZE[usize::from(b1 & 7)],
            read_size: READ_SIZE[usize::from(b1 >> 3 & 7)],
            reads,
            secure_prng: b2 & 0x40 == 0,
            capacity: (b2 & 0x80 != 0).then_some(CAPACITY[usize::from(b3 & 3)]),
            seed: u64::from(b3) | u64::from(b2) << 8 | u64::from(b1) << 16 | u64::from(b0) << 24,
        };
        Some((config, program))
    }

    /// `write_buffer_bytes` in force after the handshake.
    fn frame_bytes(&self) -> usize {
        frame_bytes_after(4096, self.write_buffer_bytes)
    }

    /// The cost of moving a payload byte with these options and frames of `frame_bytes`,
    /// in nanoseconds, as measured: about 20 ns, 450 more with compression, 2 µs over the
    /// write size, 900 ns over the read size, 6.5 µs over a read limit, 1.5 µs over the
    /// frame size, 8 µs over the writer's capacity. [`BUDGET_NS`] of it is about 2 MiB for
    /// most options, 136 KiB with compression, 31 KiB with one byte a write call.
    fn ns_per_byte(&self, frame_bytes: usize) -> usize {
        let compress = match self.deflate {
            Some(d) if d.comp_level > 0 => 450,
            Some(_) => 30,
            None => 0,
        };
        let limit = match self.reads {
            Reads::Some(n) if n > 0 => 6500 / n,
            _ => 0,
        };
        let capacity = self.capacity.map_or(0, |c| 8000 / c);
        20 + compress
            + 2000 / self.write_size
            + 900 / self.read_size
            + limit
            + 1500 / frame_bytes
            + capacity
    }
}

/// `write_buffer_bytes` after `set_write_buffer_bytes(asked)` on a stream with `current`:
/// the setter refuses less than 8 and leaves the value as it was.
fn frame_bytes_after(current: usize, asked: usize) -> usize {
    if asked < 8 {
        current
    } else {
        asked
    }
}

/// The output's high-water mark with frames of `frame_bytes` (16 frames, at least 64 KiB).
fn high_water(frame_bytes: usize) -> usize {
    (16 * frame_bytes).max(64 * 1024)
}

/// The most bytes a write of `len` payload bytes may put on the wire: the payload, or its
/// deflated form (incompressible data grows by a few bytes per block), in frames of at
/// least `frame_bytes` with at most 14 header bytes each.
fn wire(len: usize, frame_bytes: usize) -> usize {
    let body = len + len / 64 + 1024;
    body + (body / frame_bytes + 2) * 14
}

// ------------------------------------------------------------------------- the program

/// One call of the writer: a part of message `msg`.
#[derive(Debug, Clone)]
struct Part {
    msg: usize,
    range: Range<usize>,
    fin: bool,
    /// `set_binary` before the call (only the first part of a message decides its kind).
    binary: bool,
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// Write part `n`; `probe`: start part `n + 1` at once as well.
    Write {
        part: usize,
        probe: bool,
    },
    /// A ping (or a pong) with this many payload bytes.
    Control {
        pong: bool,
        len: usize,
    },
    Poll(usize),
    PollOne(usize),
    Settle,
    ToggleCompress,
    ToggleAutoFragment,
    /// `set_write_buffer_bytes` with this value (less than 8 is refused).
    SetWriteBufferBytes(usize),
    /// The writer closes at once, while its last write may still be outstanding and its
    /// last message unfinished; the program ends there.
    Close,
}

struct Message {
    binary: bool,
    data: Bytes,
}

struct Program {
    parts: Vec<Part>,
    actions: Vec<Action>,
    messages: Vec<Message>,
    /// The largest message, and the largest part on the wire.
    biggest: usize,
    biggest_wire: usize,
    controls: usize,
    /// The highest high-water mark the output has during the program.
    high_water: usize,
    /// The program ends with [`Action::Close`] and its last message has no last part.
    unfinished: bool,
}

/// A part's size: every size up to 127 (the 7-bit lengths and the first 16-bit ones), up to
/// 64 KiB in steps, the sizes around 64 KiB (the 16-bit limit, the default high-water
/// mark), and up to 384 KiB past it.
fn size(s: u8) -> usize {
    let s = usize::from(s);
    match s {
        0..=127 => s,
        128..=191 => 128 + (s - 128) * 1021,
        192..=223 => 65_520 + (s - 192),
        _ => (s - 223) * 12_007,
    }
}

fn turns(op: u8, actions: &mut Vec<Action>) {
    let n = usize::from(op >> 5 & 3);
    if n > 0 {
        actions.push(if op & 0x80 != 0 {
            Action::PollOne(n)
        } else {
            Action::Poll(n)
        });
    }
}

impl Program {
    fn parse(cfg: &Config, mut input: &[u8]) -> Program {
        let mut parts: Vec<Part> = Vec::new();
        let mut actions = Vec::new();
        // (kind, length) of each message.
        let mut lengths: Vec<(bool, usize)> = Vec::new();
        let mut open = false;
        let (mut total, mut spent_ns) = (0, 0);
        let mut controls = 0;
        // `write_buffer_bytes` in force, and the least and most it is during the program.
        let mut frame = cfg.frame_bytes();
        let (mut frame_min, mut frame_max) = (frame, frame);
        let mut closes = false;
        while let Some((&op, rest)) = input.split_first() {
            input = rest;
            let mut arg = || {
                let (&b, rest) = input.split_first().unwrap_or((&0, &[]));
                input = rest;
                b
            };
            match op & 7 {
                kind @ 0..=4 => {
                    // Cut to what is left of the budget, at the cost of the frames in force.
                    let ns = cfg.ns_per_byte(frame);
                    let by_time = BUDGET_NS.saturating_sub(spent_ns) / ns;
                    let floor = TOTAL_MIN.saturating_sub(total);
                    let len = size(arg()).min(TOTAL_MAX - total).min(by_time.max(floor));
                    total += len;
                    spent_ns += len * ns;
                    let binary = op & 8 != 0;
                    if !open {
                        lengths.push((binary, 0));
                    }
                    let msg = lengths.len() - 1;
                    let at = lengths[msg].1;
                    lengths[msg].1 += len;
                    let fin = kind <= 2;
                    open = !fin;
                    actions.push(Action::Write {
                        part: parts.len(),
                        probe: op & 0x10 != 0,
                    });
                    parts.push(Part {
                        msg,
                        range: at..at + len,
                        fin,
                        binary,
                    });
                    turns(op, &mut actions);
                }
                5 => {
                    let len = usize::from(arg()) % 126;
                    actions.push(Action::Control {
                        pong: op & 8 != 0,
                        len,
                    });
                    controls += 1;
                    turns(op, &mut actions);
                }
                6 => {
                    let n = 1 + usize::from(op >> 4);
                    actions.push(if op & 8 != 0 {
                        Action::PollOne(n)
                    } else {
                        Action::Poll(n)
                    });
                }
                _ => match op >> 3 & 3 {
                    0 => actions.push(Action::ToggleCompress),
                    1 => actions.push(Action::ToggleAutoFragment),
                    2 => actions.push(Action::Settle),
                    _ if op & 0x20 != 0 => {
                        actions.push(Action::Close);
                        closes = true;
                        break;
                    }
                    _ => {
                        let asked = WRITE_BUFFER_BYTES[usize::from(arg() & 7)];
                        frame = frame_bytes_after(frame, asked);
                        frame_min = frame_min.min(frame);
                        frame_max = frame_max.max(frame);
                        actions.push(Action::SetWriteBufferBytes(asked));
                    }
                },
            }
        }
        if open && !closes {
            // The message in progress ends with an empty last part.
            let msg = lengths.len() - 1;
            let at = lengths[msg].1;
            actions.push(Action::Write {
                part: parts.len(),
                probe: false,
            });
            parts.push(Part {
                msg,
                range: at..at,
                fin: true,
                binary: false,
            });
        }
        // A probe needs a next part.
        if let Some(Action::Write { probe, .. }) = actions
            .iter_mut()
            .rev()
            .find(|a| matches!(a, Action::Write { .. }))
        {
            *probe = false;
        }
        let messages: Vec<Message> = lengths
            .iter()
            .enumerate()
            .map(|(i, &(binary, len))| Message {
                binary,
                data: payload(cfg.seed ^ (i as u64) << 40, binary, len),
            })
            .collect();
        let biggest = lengths.iter().map(|&(_, len)| len).max().unwrap_or(0);
        let biggest_wire = parts
            .iter()
            .map(|p| wire(p.range.len(), frame_min))
            .max()
            .unwrap_or(0);
        Program {
            parts,
            actions,
            messages,
            biggest,
            biggest_wire,
            controls,
            high_water: high_water(frame_max),
            unfinished: open && closes,
        }
    }
}

// ------------------------------------------------------------------------- payloads

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() >> 16) as usize % n
    }
}

const CHARS: [&str; 10] = ["a", "q", " ", "\n", "{", "é", "ß", "€", "✓", "😀"];

/// Appends valid UTF-8 to `out` until it holds `len` bytes.
fn text_until(out: &mut Vec<u8>, len: usize, rng: &mut Rng) {
    while out.len() < len {
        let c = CHARS[rng.below(CHARS.len())].as_bytes();
        if out.len() + c.len() <= len {
            out.extend_from_slice(c);
        } else {
            out.push(b'.');
        }
    }
}

/// A message of `len` bytes from `seed`: random, a repeated pattern, or blocks of both
/// (so that compression both shrinks and grows them); UTF-8 when text.
fn payload(seed: u64, binary: bool, len: usize) -> Bytes {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len);
    let mode = rng.below(3);
    while out.len() < len {
        let block = match mode {
            0 => len,
            1 => len,
            _ => 1 + rng.below(8192),
        };
        let end = (out.len() + block).min(len);
        let random = match mode {
            0 => true,
            1 => false,
            _ => rng.below(2) == 0,
        };
        if random {
            if binary {
                while out.len() < end {
                    out.push(rng.next() as u8);
                }
            } else {
                text_until(&mut out, end, &mut rng);
            }
        } else {
            // A pattern of whole characters, repeated while it fits.
            let start = out.len();
            let pattern = 1 + rng.below(100);
            if binary {
                while out.len() < (start + pattern).min(end) {
                    out.push(rng.next() as u8);
                }
            } else {
                text_until(&mut out, (start + pattern).min(end), &mut rng);
            }
            let pattern = out.len() - start;
            while out.len() + pattern <= end {
                out.extend_from_within(start..start + pattern);
            }
            if binary {
                while out.len() < end {
                    out.push(rng.next() as u8);
                }
            } else {
                text_until(&mut out, end, &mut rng);
            }
        }
    }
    debug_assert!(binary || std::str::from_utf8(&out).is_ok());
    Bytes::from(out)
}

/// The payload of the `k`th control frame (made again to be compared, not kept).
fn control_payload(seed: u64, k: usize, len: usize) -> [u8; 125] {
    let mut rng = Rng::new(seed ^ 0xC0 ^ (k as u64) << 20);
    let mut p = [0; 125];
    for b in &mut p[..len] {
        *b = rng.next() as u8;
    }
    p
}

// ------------------------------------------------------------------------- the pair

/// Runs the context until it has nothing left to do.
fn settle(ctx: &IoContext, run: &Run) {
    let mut idle = 0;
    for _ in 0..10_000_000 {
        let n = ctx.poll();
        run.turned();
        if n == 0 {
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

/// A writer and a reader after a real handshake between them.
fn open(ctx: &IoContext, cfg: &Config) -> (Ws, Ws) {
    let (a, b) = test::Stream::pair(ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    if let Some(d) = cfg.deflate {
        let (mut pmd, ours) = (PermessageDeflate::default(), d.no_context_takeover);
        pmd.client_enable = true;
        pmd.server_enable = true;
        pmd.comp_level = d.comp_level;
        pmd.msg_size_threshold = d.threshold;
        match cfg.writer {
            Role::Client => {
                pmd.client_max_window_bits = d.window_bits;
                pmd.client_no_context_takeover = ours;
            }
            Role::Server => {
                pmd.server_max_window_bits = d.window_bits;
                pmd.server_no_context_takeover = ours;
            }
        }
        client.set_permessage_deflate(pmd).unwrap();
        server.set_permessage_deflate(pmd).unwrap();
    }
    let done = Rc::new(Cell::new(0));
    let d = done.clone();
    server.async_accept(move |r| {
        assert_eq!(r, Ok(()), "the accept succeeded");
        d.set(d.get() + 1);
    });
    let d = done.clone();
    client.async_handshake("server.example.com", "/chat", move |r| {
        assert_eq!(r, Ok(()), "the handshake succeeded");
        d.set(d.get() + 1);
    });
    let mut idle = 0;
    while idle < 2 {
        idle = if ctx.poll() == 0 { idle + 1 } else { 0 };
    }
    assert_eq!(done.get(), 2, "both handshakes completed");
    assert!(client.is_open() && server.is_open());
    for ws in [&client, &server] {
        let status = ws.permessage_deflate_status();
        assert_eq!(status.active, cfg.deflate.is_some());
        if let Some(d) = cfg.deflate {
            let windows = (status.client_window_bits, status.server_window_bits);
            match cfg.writer {
                Role::Client => assert_eq!(windows, (d.window_bits, 15)),
                Role::Server => assert_eq!(windows, (15, d.window_bits)),
            }
        }
    }
    match cfg.writer {
        Role::Client => (client, server),
        Role::Server => (server, client),
    }
}

// ------------------------------------------------------------------------- the run

/// One start of a write.
struct Attempt {
    part: usize,
    probe: bool,
    result: Option<(Result<(), Error>, usize)>,
}

/// A control frame sent: its kind, length, result, and where it may arrive: after `lo`
/// messages (finished before it was started) and before message `hi` (the messages started
/// before it).
struct Sent {
    pong: bool,
    len: usize,
    lo: usize,
    hi: usize,
    result: Option<Result<(), Error>>,
}

/// What the writer did and the reader saw.
struct Run {
    cfg: Config,
    program: Program,
    /// The writer's and the reader's transports.
    out: test::Stream,
    input: test::Stream,
    attempts: RefCell<Vec<Attempt>>,
    /// Messages whose last part completed; messages whose first part was started.
    finished: Cell<usize>,
    started: Cell<usize>,
    sent: RefCell<Vec<Sent>>,
    /// The largest number of bytes written by the writer's transport and not yet read by
    /// the reader's.
    in_flight: Cell<usize>,
    reader: RefCell<Reader>,
}

#[derive(Default)]
struct Reader {
    reads: usize,
    /// Messages read whole; bytes of the next one read so far.
    messages: usize,
    at: usize,
    /// Control frames seen, and whether the close frame was among them.
    controls: usize,
    closed: bool,
    end: Option<Error>,
}

impl Run {
    fn sample(&self) {
        let n = self
            .out
            .nwrite_bytes()
            .saturating_sub(self.input.nread_bytes());
        self.in_flight.set(self.in_flight.get().max(n));
    }

    /// After a turn of the context (`poll` or `poll_one`).
    fn turned(&self) {
        self.sample();
    }

    fn on_write(&self, id: usize, r: Result<(), Error>, n: usize) {
        self.sample();
        let mut attempts = self.attempts.borrow_mut();
        let a = &mut attempts[id];
        assert!(a.result.is_none(), "the handler of write {id} ran twice");
        a.result = Some((r.clone(), n));
        let part = &self.program.parts[a.part];
        match r {
            Ok(()) => {
                assert_eq!(
                    n,
                    part.range.len(),
                    "write {id} (part {}) reported {n} bytes",
                    a.part
                );
                if part.fin {
                    self.finished.set(self.finished.get() + 1);
                }
            }
            Err(Error::AlreadyStarted) if a.probe => {
                assert_eq!(n, 0, "a refused write took {n} bytes");
            }
            Err(e) => panic!("write {id} (part {}) failed: {e:?}", a.part),
        }
    }

    fn on_control(&self, kind: FrameType, payload: &[u8]) {
        let mut reader = self.reader.borrow_mut();
        assert!(!reader.closed, "a {kind:?} after the close frame");
        if kind == FrameType::Close {
            assert_eq!(
                reader.controls,
                self.sent.borrow().len(),
                "the close frame came before every ping and pong"
            );
            assert!(payload.is_empty(), "the close frame has no reason");
            reader.closed = true;
            return;
        }
        let k = reader.controls;
        let sent = self.sent.borrow();
        let s = sent.get(k).expect("a control frame that was not sent");
        let want = if s.pong {
            FrameType::Pong
        } else {
            FrameType::Ping
        };
        assert_eq!(kind, want, "control frame {k}");
        assert!(
            payload == &control_payload(self.cfg.seed, k, s.len)[..s.len],
            "the payload of control frame {k}"
        );
        assert!(
            (s.lo..=s.hi).contains(&reader.messages),
            "control frame {k} arrived after {} messages, sent after {} finished and {} started",
            reader.messages,
            s.lo,
            s.hi
        );
        reader.controls += 1;
    }

    /// A read completed; true when the next one is to be started.
    fn on_read(
        &self,
        ws: &Ws,
        buffer: &FlatBuffer,
        (whole, limit): (bool, usize),
        r: Result<(), Error>,
        n: usize,
    ) -> bool {
        self.sample();
        let mut reader = self.reader.borrow_mut();
        reader.reads += 1;
        assert_eq!(
            buffer.size(),
            n,
            "the buffer holds the bytes the read reports"
        );
        if !whole && limit != 0 {
            assert!(n <= limit, "read_some({limit}) delivered {n} bytes");
        }
        if let Err(e) = r {
            // A whole-message read that meets the close in an unfinished message reports the
            // bytes of it that it delivered.
            assert!(
                n == 0 || (whole && self.program.unfinished),
                "a failed read delivered {n} bytes"
            );
            if n > 0 {
                self.check_delivered(&mut reader, buffer, n);
            }
            reader.end = Some(e);
            return false;
        }
        let k = reader.messages;
        let message = self.check_delivered(&mut reader, buffer, n);
        assert_eq!(ws.got_binary(), message.binary, "the kind of message {k}");
        if whole {
            assert!(ws.is_message_done(), "async_read ends with the message");
        }
        if ws.is_message_done() {
            assert_eq!(reader.at, message.data.len(), "message {k} ended early");
            reader.messages += 1;
            reader.at = 0;
        } else {
            assert!(n > 0, "a read that ends no message delivers something");
        }
        true
    }

    /// Checks the `n` bytes a read delivered against the message being read and counts
    /// them; the message.
    fn check_delivered(&self, reader: &mut Reader, buffer: &FlatBuffer, n: usize) -> &Message {
        let k = reader.messages;
        let message = self
            .program
            .messages
            .get(k)
            .expect("a message that was not sent");
        let at = reader.at;
        assert!(
            at + n <= message.data.len() && *buffer.data() == message.data[at..at + n],
            "message {k} differs at {at}..{} (of {})",
            at + n,
            message.data.len()
        );
        reader.at += n;
        message
    }

    /// Starts part `part`; the attempt's index.
    fn write(self: &Rc<Self>, ws: &Ws, part: usize, probe: bool) -> usize {
        let p = &self.program.parts[part];
        ws.set_binary(p.binary);
        if p.range.start == 0 {
            self.started.set(self.started.get().max(p.msg + 1));
        }
        let data = self.program.messages[p.msg].data.slice(p.range.clone());
        let id = {
            let mut attempts = self.attempts.borrow_mut();
            attempts.push(Attempt {
                part,
                probe,
                result: None,
            });
            attempts.len() - 1
        };
        let run = self.clone();
        let handler = move |r, n| run.on_write(id, r, n);
        if p.range.start == 0 && p.fin {
            ws.async_write(data, handler);
        } else {
            ws.async_write_some(p.fin, data, handler);
        }
        id
    }

    fn done(&self, id: usize) -> bool {
        self.attempts.borrow()[id].result.is_some()
    }

    /// Turns the context until write `id` completed.
    fn wait(&self, ctx: &IoContext, id: usize) {
        for _ in 0..10_000_000 {
            if self.done(id) {
                return;
            }
            ctx.poll_one();
            self.turned();
        }
        panic!("write {id} never completed");
    }
}

fn read_next(ws: &Ws, run: &Rc<Run>) {
    let how = run.cfg.reads.nth(run.reader.borrow().reads);
    let buffer = FlatBuffer::new();
    let (w, r, b) = (ws.clone(), run.clone(), buffer.clone());
    let handler = move |res, n| {
        if r.on_read(&w, &b, how, res, n) {
            read_next(&w, &r);
        }
    };
    reads::start(ws, &buffer, how, handler);
}

/// Runs `program`; the most bytes in flight.
fn run(cfg: &Config, program: Program) -> usize {
    let ctx = IoContext::new().unwrap();
    let (writer, reader) = open(&ctx, cfg);
    let wbb = writer.set_write_buffer_bytes(cfg.write_buffer_bytes);
    if cfg.write_buffer_bytes < 8 {
        assert_eq!(
            wbb,
            Err(Error::InvalidArgument(
                ArgumentError::WriteBufferBytesTooSmall
            ))
        );
    } else {
        assert_eq!(wbb, Ok(()));
    }
    assert_eq!(writer.write_buffer_bytes(), cfg.frame_bytes());
    writer.set_auto_fragment(cfg.auto_fragment);
    writer.set_secure_prng(cfg.secure_prng);
    writer.next_layer().write_size(cfg.write_size);
    if let Some(n) = cfg.capacity {
        writer.next_layer().write_capacity(n);
    }
    reader.next_layer().read_size(cfg.read_size);

    let parts = program.parts.len();
    let controls = program.controls;
    let run = Rc::new(Run {
        cfg: *cfg,
        program,
        out: writer.next_layer().clone(),
        input: reader.next_layer().clone(),
        attempts: RefCell::new(Vec::with_capacity(2 * parts)),
        finished: Cell::new(0),
        started: Cell::new(0),
        sent: RefCell::new(Vec::with_capacity(controls)),
        in_flight: Cell::new(0),
        reader: RefCell::new(Reader::default()),
    });
    let r = run.clone();
    reader.set_control_callback(move |kind, payload| r.on_control(kind, payload));
    read_next(&reader, &run);
    settle(&ctx, &run);

    // The last write started normally, and a probe of the next part.
    let mut last: Option<usize> = None;
    let mut probe: Option<(usize, usize, bool)> = None;
    // Nothing is queued: the output was flushed and no write or control started since.
    let mut quiet = true;
    // `write_buffer_bytes` in force, and as the message being written began (its frames
    // keep that size).
    let mut frame = cfg.frame_bytes();
    let mut message_frame = frame;
    let closed = Rc::new(RefCell::new(None));
    let close = || {
        let c = closed.clone();
        writer.async_close(CloseCode::NORMAL, move |r| {
            assert!(c.borrow().is_none(), "the close handler ran twice");
            *c.borrow_mut() = Some(r);
        });
    };
    for &action in &run.program.actions {
        match action {
            Action::Write { part, probe: then } => {
                if let Some(id) = last.take() {
                    run.wait(&ctx, id);
                }
                if let Some((p, id, must_admit)) = probe.take() {
                    assert_eq!(p, part);
                    run.wait(&ctx, id);
                    let admitted = run.attempts.borrow()[id].result.as_ref().unwrap().0.is_ok();
                    assert!(
                        admitted || !must_admit,
                        "part {part} was refused after a small write on an empty output"
                    );
                    if admitted {
                        continue;
                    }
                }
                let range = run.program.parts[part].range.clone();
                if range.start == 0 {
                    message_frame = frame;
                }
                let small = wire(range.len(), frame.min(message_frame)) <= high_water(frame) / 2;
                last = Some(run.write(&writer, part, false));
                if then {
                    let id = run.write(&writer, part + 1, true);
                    probe = Some((part + 1, id, quiet && small));
                }
                quiet = false;
            }
            Action::Control { pong, len } => {
                let k = run.sent.borrow().len();
                run.sent.borrow_mut().push(Sent {
                    pong,
                    len,
                    lo: run.finished.get(),
                    hi: run.started.get(),
                    result: None,
                });
                let payload = control_payload(cfg.seed, k, len);
                let r = run.clone();
                let handler = move |res: Result<(), Error>| {
                    let mut sent = r.sent.borrow_mut();
                    assert!(sent[k].result.is_none(), "control {k}'s handler ran twice");
                    sent[k].result = Some(res);
                };
                if pong {
                    writer.async_pong(&payload[..len], handler);
                } else {
                    writer.async_ping(&payload[..len], handler);
                }
                quiet = false;
            }
            Action::Poll(n) => {
                for _ in 0..n {
                    ctx.poll();
                    run.turned();
                }
            }
            Action::PollOne(n) => {
                for _ in 0..n {
                    ctx.poll_one();
                    run.turned();
                }
            }
            Action::Settle => {
                settle(&ctx, &run);
                let pending = run.attempts.borrow().iter().any(|a| a.result.is_none());
                assert!(!pending, "a write still outstanding with the context idle");
                quiet = true;
            }
            Action::ToggleCompress => writer.set_compress(!writer.compress()),
            Action::ToggleAutoFragment => writer.set_auto_fragment(!writer.auto_fragment()),
            Action::SetWriteBufferBytes(n) => {
                let r = writer.set_write_buffer_bytes(n);
                if n < 8 {
                    assert_eq!(
                        r,
                        Err(Error::InvalidArgument(
                            ArgumentError::WriteBufferBytesTooSmall
                        ))
                    );
                } else {
                    assert_eq!(r, Ok(()));
                }
                frame = frame_bytes_after(frame, n);
                assert_eq!(writer.write_buffer_bytes(), frame);
            }
            Action::Close => {
                // The close waits for an outstanding write, which completes whole.
                assert!(probe.is_none(), "the last write never probes");
                close();
            }
        }
    }
    if let Some(id) = last {
        run.wait(&ctx, id);
    }
    assert!(probe.is_none());
    settle(&ctx, &run);

    // Every write completed once: each part taken whole by one start, the others refused.
    {
        let attempts = run.attempts.borrow();
        let mut taken = vec![0usize; parts];
        for (id, a) in attempts.iter().enumerate() {
            match &a.result {
                Some((Ok(()), _)) => taken[a.part] += 1,
                Some(_) => {}
                None => panic!("the handler of write {id} never ran"),
            }
        }
        assert!(
            taken.iter().all(|&t| t == 1),
            "a part written {taken:?} times"
        );
    }
    for (k, s) in run.sent.borrow().iter().enumerate() {
        assert_eq!(s.result, Some(Ok(())), "control frame {k}'s handler");
    }
    let closed_early = matches!(run.program.actions.last(), Some(Action::Close));
    {
        let r = run.reader.borrow();
        let finished = run.program.messages.len() - usize::from(run.program.unfinished);
        assert_eq!(r.messages, finished, "every finished message arrived");
        if run.program.unfinished {
            // What was taken of the unfinished message arrived, unless compressed: a part
            // without fin may stay in the compressor.
            let len = run.program.messages[finished].data.len();
            assert!(
                r.at == len || (cfg.deflate.is_some() && r.at < len),
                "{} of the unfinished message's {len} bytes arrived",
                r.at
            );
        } else {
            assert_eq!(r.at, 0);
        }
        assert_eq!(
            r.controls,
            run.sent.borrow().len(),
            "every control frame arrived"
        );
        if !closed_early {
            assert!(r.end.is_none(), "the read ended with {:?}", r.end);
        }
    }

    // The writer closes, if the program did not; the reader's read ends with `Closed`.
    if !closed_early {
        close();
    }
    settle(&ctx, &run);
    assert_eq!(closed.take(), Some(Ok(())), "the close");
    {
        let r = run.reader.borrow();
        assert_eq!(r.end, Some(Error::Closed), "the reader's last read");
        assert!(r.closed, "the reader saw the close frame");
    }
    assert_eq!(reader.reason().code, CloseCode::NORMAL);
    assert!(!writer.is_open() && !reader.is_open());
    reader.clear_control_callback();

    // Writes, pings and reads after the close are aborted.
    let after = Rc::new(RefCell::new(Vec::new()));
    let a = after.clone();
    writer.async_write(Bytes::from_static(b"late"), move |r, n| {
        a.borrow_mut().push((r, n))
    });
    let a = after.clone();
    writer.async_ping(b"late", move |r| a.borrow_mut().push((r, 0)));
    let a = after.clone();
    reader.async_read(&FlatBuffer::new(), move |r, n| a.borrow_mut().push((r, n)));
    settle(&ctx, &run);
    assert_eq!(
        *after.borrow(),
        [
            (Err(Error::OperationAborted), 0),
            (Err(Error::OperationAborted), 0),
            (Err(Error::OperationAborted), 0)
        ],
        "operations after the close"
    );
    // Nothing is left to run, not even once the streams are gone.
    drop((writer, reader));
    assert_eq!(ctx.poll(), 0, "a handler ran after the context went idle");
    run.in_flight.get()
}

fuzz_target!(|input: &[u8]| {
    let Some((cfg, program)) = Config::parse(input) else {
        return;
    };
    let program = Program::parse(&cfg, program);
    let (biggest, wire, high_water) = (program.biggest, program.biggest_wire, program.high_water);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let in_flight = run(&cfg, program);
    let used = PEAK.load(Ordering::Relaxed) - base;
    // Each buffer below grows by doubling, and may hold its old and its new allocation at
    // once while it grows: three times what it holds. The reader's buffer holds at most the
    // largest message; the writer's output frames up to its high-water mark and one frame
    // past it (a whole part without auto-fragment, at most `wire`); the reader's transport
    // holds the bytes in flight. `test::Stream` queues one wake-up of its peer per flush, not
    // one per write call (they are in the fixed amount).
    let bound = FIXED_MEMORY + 3 * biggest + 3 * (wire + high_water) + 3 * in_flight;
    assert!(
        used <= bound,
        "{used} bytes allocated at the peak (bound {bound}), for messages of up to {biggest} \
         bytes, writes of up to {wire} on the wire, a high-water mark of up to {high_water} \
         and {in_flight} bytes in flight"
    );
});
