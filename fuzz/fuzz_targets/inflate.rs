//! The inflater on arbitrary compressed data, fed in pieces as several messages, under a
//! limit: it must never panic, never pass the limit, and report only its named errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbeast::proto::deflate::Inflater;
use rbeast::Error;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let bits = 8 + control % 8;
    let reset = control & 0x08 != 0;
    let limit = 1 << (10 + (control >> 4) % 8); // 1 KiB .. 128 KiB
    let mut inflater = Inflater::new(bits, reset);
    // 0xfe splits messages, so several messages share (or reset) the context.
    for message in input.split(|&b| b == 0xfe) {
        let mut out = Vec::new();
        let piece = 1 + (control as usize % 5) * 13;
        let pieces: Vec<&[u8]> = message.chunks(piece).collect();
        let count = pieces.len().max(1);
        for k in 0..count {
            let chunk = pieces.get(k).copied().unwrap_or(&[]);
            match inflater.inflate(chunk, k + 1 == count, &mut out, limit) {
                Ok(_) => assert!(out.len() <= limit),
                Err(Error::BadDeflateData) | Err(Error::MessageTooBig) => {
                    assert!(out.len() <= limit);
                    break;
                }
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
    }
});
