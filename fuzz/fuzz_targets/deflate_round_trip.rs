//! Messages compressed and inflated by three channels on one thread, each with its own
//! level, window, memory level and context takeover, with one channel's message in progress
//! while another's is sent whole: every message must come back as it was sent. Channels
//! without context takeover share their thread's reset states between messages; channels
//! with it may free their states between messages and resume from their kept windows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbeast::proto::deflate::{Deflater, Inflater};

struct Channel {
    deflater: Deflater,
    inflater: Inflater,
    chunk: usize,
}

impl Channel {
    fn new(c: u8) -> Channel {
        let bits = 9 + (c >> 4) % 7;
        let no_context_takeover = c & 0x08 != 0;
        let mut deflater = Deflater::new(u32::from(c % 10), bits, no_context_takeover)
            .with_mem_level(1 + u32::from(c >> 5));
        let mut inflater = Inflater::new(bits, no_context_takeover);
        if c & 0x04 != 0 {
            deflater = deflater.with_idle_release();
            inflater = inflater.with_idle_release();
        }
        Channel {
            deflater,
            inflater,
            chunk: 16 + usize::from(c) * 7,
        }
    }

    /// Frees the compressor's or the decompressor's state as the bits of `choice` say (a
    /// channel without idle release, or in the middle of a message, keeps them).
    fn release(&mut self, choice: u8) {
        if choice & 1 != 0 {
            self.deflater.release_idle();
        }
        if choice & 2 != 0 {
            self.inflater.release_idle();
        }
    }

    /// Compresses `input` as a piece of the current message, appending the compressed
    /// bytes to `wire`.
    fn compress(&mut self, mut input: &[u8], last: bool, wire: &mut Vec<u8>) {
        loop {
            let p = self
                .deflater
                .compress(input, last, wire, self.chunk)
                .unwrap();
            input = &input[p.consumed..];
            if p.done {
                assert!(input.is_empty());
                return;
            }
        }
    }

    fn inflate(&mut self, wire: &[u8], last: bool, out: &mut Vec<u8>) {
        self.inflater.inflate(wire, last, out, usize::MAX).unwrap();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let mut channels: Vec<Channel> = (0..3)
        .map(|k| Channel::new(control.rotate_left(3 * k) ^ (k as u8 * 0x55)))
        .collect();
    let messages: Vec<&[u8]> = input.split(|&b| b == 0xfe).collect();
    for pair in messages.chunks(2) {
        let (first, second) = (pair[0], pair.get(1).copied().unwrap_or(&[]));
        let a = usize::from(first.first().copied().unwrap_or(0) % 3);
        let b = (a + 1 + usize::from(second.first().copied().unwrap_or(0) % 2)) % 3;
        // `first` on channel a, begun, then `second` whole on channel b, then the rest.
        let half = first.len() / 2;
        let (mut wire_a, mut wire_b) = (Vec::new(), Vec::new());
        let (choice_a, choice_b) = (
            first.last().copied().unwrap_or(0),
            second.last().copied().unwrap_or(0),
        );
        channels[a].compress(&first[..half], false, &mut wire_a);
        channels[a].release(choice_a); // in the middle of a message: nothing happens
        channels[b].compress(second, true, &mut wire_b);
        channels[b].release(choice_b);
        channels[a].compress(&first[half..], true, &mut wire_a);
        // The same interleaving on the receiving side.
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let cut = wire_a.len() / 2;
        channels[a].inflate(&wire_a[..cut], false, &mut out_a);
        channels[b].inflate(&wire_b, true, &mut out_b);
        channels[a].inflate(&wire_a[cut..], true, &mut out_a);
        channels[a].release(choice_a);
        assert_eq!(out_a, first);
        assert_eq!(out_b, second);
    }
});
