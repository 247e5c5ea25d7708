//! Feeds arbitrary bytes, in arbitrary chunkings, through the frame reader in both roles,
//! with and without permessage-deflate, unmasking payloads, validating text as UTF-8 and
//! parsing close payloads. The reader fed piece by piece (`push`) must report exactly the
//! same events as the reader given the whole input at once (`decode`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbeast::proto::close::CloseReason;
use rbeast::proto::frame::{FrameHeader, FrameReader, Opcode, ReadRules};
use rbeast::proto::mask::apply_mask;
use rbeast::proto::utf8::Utf8Validator;
use rbeast::{Error, Role};

#[derive(Debug, PartialEq)]
enum Event {
    Header(FrameHeader),
    Frame(Error),
    Text(Error),
    Close(Result<CloseReason, Error>),
    MessageEnd,
}

/// Everything that happens to payload bytes, shared by both ways of feeding the reader.
struct Payload {
    header: Option<FrameHeader>,
    left: u64,
    offset: usize,
    text: bool,
    utf8: Utf8Validator,
    control: [u8; 125],
    control_len: usize,
    scratch: Vec<u8>,
}

impl Payload {
    fn new() -> Self {
        Payload {
            header: None,
            left: 0,
            offset: 0,
            text: false,
            utf8: Utf8Validator::new(),
            control: [0; 125],
            control_len: 0,
            scratch: Vec::new(),
        }
    }

    /// A header was accepted; returns false when the stream must stop.
    fn start(&mut self, reader: &FrameReader, h: FrameHeader, events: &mut Vec<Event>) -> bool {
        events.push(Event::Header(h));
        assert!(h.len < 1 << 63);
        if h.opcode.is_control() {
            assert!(h.fin && h.len <= 125 && !h.rsv1 && !h.rsv2 && !h.rsv3);
        } else {
            assert!(!h.rsv2 && !h.rsv3);
            if h.opcode == Opcode::Continuation {
                assert!(!h.rsv1);
            } else {
                self.text = h.opcode == Opcode::Text && !reader.message_compressed();
                if self.text {
                    self.utf8.reset();
                }
            }
        }
        match reader.rules().role {
            Role::Server => assert!(h.mask.is_some()),
            Role::Client => assert!(h.mask.is_none()),
        }
        self.header = Some(h);
        self.left = h.len;
        self.offset = 0;
        self.control_len = 0;
        self.after_bytes(events)
    }

    /// Takes payload bytes from `input`; returns how many, and false when the stream must
    /// stop.
    fn take(&mut self, input: &[u8], events: &mut Vec<Event>) -> (usize, bool) {
        let Some(h) = self.header else {
            return (0, true);
        };
        let k = (self.left.min(input.len() as u64)) as usize;
        self.scratch.clear();
        self.scratch.extend_from_slice(&input[..k]);
        if let Some(key) = h.mask {
            let before = self.scratch.clone();
            let next = apply_mask(&mut self.scratch, key, self.offset);
            assert_eq!(next, (self.offset + k) % 4);
            for (i, (m, b)) in self.scratch.iter().zip(&before).enumerate() {
                assert_eq!(*m, *b ^ key[(self.offset + i) % 4]);
            }
            self.offset = next;
        }
        self.left -= k as u64;
        if h.opcode.is_control() {
            self.control[self.control_len..self.control_len + k].copy_from_slice(&self.scratch);
            self.control_len += k;
        } else if self.text {
            if let Err(e) = self.utf8.feed(&self.scratch) {
                events.push(Event::Text(e));
                return (k, false);
            }
        }
        (k, self.after_bytes(events))
    }

    fn after_bytes(&mut self, events: &mut Vec<Event>) -> bool {
        let Some(h) = self.header else {
            return true;
        };
        if self.left != 0 {
            return true;
        }
        self.header = None;
        if h.opcode == Opcode::Close {
            let r = CloseReason::parse(&self.control[..self.control_len]);
            let stop = r.is_err();
            events.push(Event::Close(r));
            return !stop;
        }
        if !h.opcode.is_control() && h.fin {
            if self.text {
                if let Err(e) = self.utf8.finish() {
                    events.push(Event::Text(e));
                    return false;
                }
            }
            events.push(Event::MessageEnd);
        }
        true
    }
}

fn by_push(rules: ReadRules, data: &[u8], mut chunk_seed: u32) -> Vec<Event> {
    let mut reader = FrameReader::new(rules);
    let mut payload = Payload::new();
    let mut events = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        chunk_seed = chunk_seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let size = 1 + (chunk_seed >> 16) as usize % 23;
        let (mut chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        while !chunk.is_empty() {
            if payload.header.is_some() {
                let (k, go) = payload.take(chunk, &mut events);
                if !go {
                    return events;
                }
                chunk = &chunk[k..];
                continue;
            }
            match reader.push(chunk) {
                Err(e) => {
                    events.push(Event::Frame(e));
                    return events;
                }
                Ok((n, h)) => {
                    assert!(n > 0 && n <= chunk.len());
                    chunk = &chunk[n..];
                    if let Some(h) = h {
                        if !payload.start(&reader, h, &mut events) {
                            return events;
                        }
                    } else {
                        assert!(chunk.is_empty());
                    }
                }
            }
        }
    }
    events
}

fn by_decode(rules: ReadRules, data: &[u8]) -> Vec<Event> {
    let mut reader = FrameReader::new(rules);
    let mut payload = Payload::new();
    let mut events = Vec::new();
    let mut rest = data;
    loop {
        if payload.header.is_some() {
            if rest.is_empty() {
                return events;
            }
            let (k, go) = payload.take(rest, &mut events);
            if !go {
                return events;
            }
            rest = &rest[k..];
            continue;
        }
        match reader.decode(rest) {
            Err(e) => {
                events.push(Event::Frame(e));
                return events;
            }
            Ok(None) => {
                assert!(rest.len() < 14);
                return events;
            }
            Ok(Some((h, n))) => {
                let mut out = [0u8; 14];
                let m = h.encode(&mut out);
                assert_eq!(&out[..m], &rest[..n], "re-encoding gives the bytes read");
                rest = &rest[n..];
                if !payload.start(&reader, h, &mut events) {
                    return events;
                }
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&cfg, rest)) = input.split_first() else {
        return;
    };
    let Some((&seed, data)) = rest.split_first() else {
        return;
    };
    let rules = ReadRules {
        role: if cfg & 1 != 0 {
            Role::Server
        } else {
            Role::Client
        },
        pmd_active: cfg & 2 != 0,
        read_message_max: match cfg >> 2 & 3 {
            0 => 0,
            1 => 1,
            2 => 300,
            _ => ReadRules::DEFAULT_READ_MESSAGE_MAX,
        },
    };
    let whole = by_decode(rules, data);
    let pieces = by_push(rules, data, u32::from(seed) | u32::from(cfg) << 8);
    assert_eq!(whole, pieces);
});
