//! Codec tests: cross-checks against flate2, chunking, context takeover, limits.

use super::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use rand::{Rng, SeedableRng};

/// Compresses a whole message with our deflater, `chunk` bytes of output at a time, the
/// input given in pieces of `piece` bytes.
pub(super) fn deflate_msg(d: &mut Deflater, msg: &[u8], piece: usize, chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if msg.is_empty() {
        vec![msg]
    } else {
        msg.chunks(piece).collect()
    };
    let mut calls = 0;
    for (i, mut p) in pieces.iter().copied().enumerate() {
        let last = i + 1 == pieces.len();
        loop {
            calls += 1;
            assert!(
                calls < 100 + 2 * msg.len(),
                "the compressor does not make progress"
            );
            let before = out.len();
            let r = d.compress(p, last, &mut out, chunk).unwrap();
            assert!(out.len() - before <= chunk);
            assert_eq!(out.len() - before, r.written);
            p = &p[r.consumed..];
            if r.done {
                break;
            }
        }
        assert!(p.is_empty());
    }
    out
}

/// Inflates a whole message with our inflater, fed in pieces of `piece` bytes.
pub(super) fn inflate_msg(i: &mut Inflater, wire: &[u8], piece: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = if wire.is_empty() {
        vec![wire]
    } else {
        wire.chunks(piece).collect()
    };
    for (k, p) in pieces.iter().enumerate() {
        i.inflate(p, k + 1 == pieces.len(), &mut out, usize::MAX)?;
    }
    Ok(out)
}

/// flate2 alone: sync-flushed raw deflate with the tail removed.
fn reference_deflate(msg: &[u8], bits: u8) -> Vec<u8> {
    let mut z = Compress::new_with_window_bits(Compression::new(6), false, bits);
    let mut out = Vec::with_capacity(msg.len() + 64);
    loop {
        let consumed = z.total_in() as usize;
        z.compress_vec(&msg[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if z.total_in() as usize == msg.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(4096);
    }
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// flate2 alone: inflate with the tail appended.
fn reference_inflate(wire: &[u8], bits: u8) -> Vec<u8> {
    let mut z = Decompress::new_with_window_bits(false, bits);
    let mut input = wire.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(1024);
    loop {
        let used = z.total_in() as usize;
        z.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .unwrap();
        if z.total_in() as usize == input.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(1024));
    }
    out
}

pub(super) fn sample(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<u8> {
    // Half random bytes, half repetitive text, so both stored and Huffman blocks occur.
    let words: [&[u8]; 4] = [b"{\"id\":", b"\"name\":\"rbeast\",", b"[1,2,3],", b"null}"];
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        if rng.random_bool(0.5) {
            v.push(rng.random());
        } else {
            v.extend_from_slice(words[rng.random_range(0..4)]);
        }
    }
    v.truncate(len);
    v
}

#[test]
fn cross_check_with_flate2_every_window() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let sizes = [
        0usize, 1, 2, 3, 4, 5, 7, 100, 1000, 4095, 4096, 4097, 65_536, 200_000,
    ];
    for bits in 9..=15u8 {
        for &n in &sizes {
            let msg = sample(&mut rng, n);
            let mut d = Deflater::new(6, bits, true);
            let ours = deflate_msg(&mut d, &msg, 1000, 4096);
            assert_eq!(
                reference_inflate(&ours, bits),
                msg,
                "ours→flate2 bits {bits} n {n}"
            );
            let theirs = reference_deflate(&msg, bits);
            let mut i = Inflater::new(bits, true);
            assert_eq!(
                inflate_msg(&mut i, &theirs, 777).unwrap(),
                msg,
                "flate2→ours bits {bits} n {n}"
            );
        }
    }
}

#[test]
fn small_chunks_and_pieces() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for &(piece, chunk) in &[
        (1usize, 16usize),
        (3, 17),
        (17, 18),
        (5000, 16),
        (1, 4096),
        (9, 21),
    ] {
        for &n in &[0usize, 1, 10, 300, 5000] {
            let msg = sample(&mut rng, n);
            let mut d = Deflater::new(8, 15, false);
            let mut i = Inflater::new(15, false);
            for _ in 0..3 {
                let wire = deflate_msg(&mut d, &msg, piece, chunk);
                assert_eq!(
                    inflate_msg(&mut i, &wire, piece).unwrap(),
                    msg,
                    "{piece} {chunk} {n}"
                );
            }
        }
    }
}

#[test]
fn every_small_chunk_size_terminates() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for chunk in MIN_DEFLATE_CHUNK..48 {
        let mut d = Deflater::new(6, 15, false);
        let mut i = Inflater::new(15, false);
        for n in [0usize, 1, 5, 33, 700] {
            let msg = sample(&mut rng, n);
            let wire = deflate_msg(&mut d, &msg, 11, chunk);
            assert_eq!(
                inflate_msg(&mut i, &wire, 5).unwrap(),
                msg,
                "chunk {chunk} n {n}"
            );
        }
    }
}

#[test]
fn tail_is_stripped() {
    let mut d = Deflater::new(8, 15, false);
    for chunk in 16..64 {
        let wire = deflate_msg(&mut d, b"abcabcabcabc", 100, chunk);
        assert!(!wire.ends_with(&TAIL), "chunk {chunk}: {wire:02x?}");
        let mut full = wire.clone();
        full.extend_from_slice(&TAIL);
        assert!(full.ends_with(&TAIL));
    }
}

#[test]
fn context_takeover_shrinks_repeated_messages() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let msg = sample(&mut rng, 3000);
    let mut with = Deflater::new(8, 15, false);
    let first = deflate_msg(&mut with, &msg, 3000, 4096);
    let second = deflate_msg(&mut with, &msg, 3000, 4096);
    assert!(
        second.len() * 4 < first.len(),
        "{} vs {}",
        second.len(),
        first.len()
    );
    let mut i = Inflater::new(15, false);
    assert_eq!(inflate_msg(&mut i, &first, 100).unwrap(), msg);
    assert_eq!(inflate_msg(&mut i, &second, 100).unwrap(), msg);
    // The second message cannot be inflated without the first one's context.
    let mut fresh = Inflater::new(15, true);
    assert!(inflate_msg(&mut fresh, &second, 100)
        .map(|v| v != msg)
        .unwrap_or(true));

    let mut without = Deflater::new(8, 15, true);
    let a = deflate_msg(&mut without, &msg, 3000, 4096);
    let b = deflate_msg(&mut without, &msg, 3000, 4096);
    assert_eq!(a, b);
    assert_eq!(a, first);
    // A resetting inflater reads every such message on its own.
    let mut i = Inflater::new(15, true);
    assert_eq!(inflate_msg(&mut i, &a, 7).unwrap(), msg);
    assert_eq!(inflate_msg(&mut i, &b, 7).unwrap(), msg);
}

#[test]
fn lazy_allocation() {
    let mut d = Deflater::new(8, 15, false);
    let mut i = Inflater::new(15, false);
    assert!(!d.is_allocated() && !i.is_allocated());
    let wire = deflate_msg(&mut d, b"x", 1, 64);
    assert!(!wire.is_empty());
    assert!(d.is_allocated() && !i.is_allocated());
    inflate_msg(&mut i, &wire, 1).unwrap();
    assert!(i.is_allocated());
}

#[test]
fn decompression_bomb_is_bounded() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let mut d = Deflater::new(9, 15, false);
    let wire = deflate_msg(&mut d, &zeros, 1 << 20, 1 << 20);
    assert!(wire.len() < 20 * 1024, "{}", wire.len());
    drop(zeros);
    let limit = 1024 * 1024;
    for piece in [wire.len(), 1000, 1] {
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        let mut err = None;
        let pieces: Vec<&[u8]> = wire.chunks(piece).collect();
        for (k, p) in pieces.iter().enumerate() {
            if let Err(e) = i.inflate(p, k + 1 == pieces.len(), &mut out, limit) {
                err = Some(e);
                break;
            }
            assert!(out.len() <= limit);
        }
        assert_eq!(err, Some(Error::MessageTooBig));
        assert!(out.len() <= limit);
        assert!(out.capacity() <= 2 * limit, "{}", out.capacity());
        assert!(!i.is_allocated());
    }
}

#[test]
fn limit_is_exact() {
    let msg = vec![7u8; 5000];
    let mut d = Deflater::new(8, 15, true);
    let wire = deflate_msg(&mut d, &msg, 5000, 4096);
    let mut out = Vec::new();
    assert_eq!(
        Inflater::new(15, true).inflate(&wire, true, &mut out, 5000),
        Ok(5000)
    );
    let mut out = Vec::new();
    let r = Inflater::new(15, true).inflate(&wire, true, &mut out, 4999);
    assert_eq!(r, Err(Error::MessageTooBig));
    // The limit is per message: two messages of 5000 under a 5000 limit pass.
    let mut i = Inflater::new(15, true);
    for _ in 0..2 {
        let mut out = Vec::new();
        assert_eq!(i.inflate(&wire, true, &mut out, 5000), Ok(5000));
    }
}

#[test]
fn corrupt_data() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    for bad in [
        &[0xffu8, 0xff, 0xff][..],
        &[0x07],
        &[0x03, 0xff, 0xff, 0xff, 0xff, 0xff],
    ] {
        let mut out = Vec::new();
        let r = Inflater::new(15, false).inflate(bad, true, &mut out, 1 << 20);
        assert_eq!(r, Err(Error::BadDeflateData), "{bad:02x?}");
    }
    // Flipped bytes in a valid stream: never a panic, an error or wrong-but-bounded output.
    let msg = sample(&mut rng, 2000);
    let wire = deflate_msg(&mut Deflater::new(8, 15, true), &msg, 2000, 4096);
    let mut errors = 0;
    for k in 0..wire.len() {
        let mut w = wire.clone();
        w[k] ^= 0x5a;
        let mut out = Vec::new();
        match Inflater::new(15, true).inflate(&w, true, &mut out, 10_000) {
            Err(Error::BadDeflateData) | Err(Error::MessageTooBig) => errors += 1,
            Err(e) => panic!("{e:?}"),
            Ok(_) => assert!(out.len() <= 10_000),
        }
    }
    assert!(errors > 0);
}

#[test]
fn stored_and_final_blocks_from_other_senders() {
    // A peer that ends a message with a final block (BFINAL=1), then starts afresh.
    let mut z = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut wire = Vec::with_capacity(1024);
    z.compress_vec(b"hello final", &mut wire, FlushCompress::Finish)
        .unwrap();
    let mut i = Inflater::new(15, false);
    assert_eq!(inflate_msg(&mut i, &wire, 3).unwrap(), b"hello final");
    let next = reference_deflate(b"second", 15);
    assert_eq!(inflate_msg(&mut i, &next, 100).unwrap(), b"second");
    // The RFC 7692 §7.2.3.3 example: "Hello" in a stored block.
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    assert_eq!(
        inflate_msg(&mut Inflater::new(15, false), &stored, 2).unwrap(),
        b"Hello"
    );
    // §7.2.3.2: two messages sharing context.
    let mut i = Inflater::new(15, false);
    assert_eq!(
        inflate_msg(&mut i, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 1).unwrap(),
        b"Hello"
    );
    assert_eq!(
        inflate_msg(&mut i, &[0xf2, 0x00, 0x11, 0x00, 0x00], 1).unwrap(),
        b"Hello"
    );
}

#[test]
fn argument_errors() {
    let mut d = Deflater::new(8, 15, false);
    let mut out = Vec::new();
    assert!(matches!(
        d.compress(b"x", true, &mut out, 15),
        Err(Error::InvalidArgument(_))
    ));
    let mut small = [0u8; 16];
    let mut slice = &mut small[..];
    assert_eq!(
        d.compress(b"x", true, &mut slice, 32),
        Err(Error::BufferOverflow)
    );
    // A full fixed buffer on inflate: an error, never a panic.
    let wire = deflate_msg(&mut Deflater::new(8, 15, true), &[1u8; 100], 100, 64);
    let mut tiny = [0u8; 10];
    let mut slice = &mut tiny[..];
    assert_eq!(
        Inflater::new(15, true).inflate(&wire, true, &mut slice, 1000),
        Err(Error::BufferOverflow)
    );
    // Out-of-range parameters are clamped, not a panic.
    let mut d = Deflater::new(99, 3, false);
    let wire = deflate_msg(&mut d, b"clamped", 7, 64);
    assert_eq!(
        inflate_msg(&mut Inflater::new(200, false), &wire, 7).unwrap(),
        b"clamped"
    );
}

#[test]
fn role_selection() {
    let p = PmdParams {
        server_max_window_bits: 9,
        client_max_window_bits: 12,
        server_no_context_takeover: true,
        client_no_context_takeover: false,
    };
    let opts = PermessageDeflate::default();
    let c = Deflater::for_role(Role::Client, &p, &opts);
    assert_eq!((c.window_bits, c.no_context_takeover), (12, false));
    let s = Deflater::for_role(Role::Server, &p, &opts);
    assert_eq!((s.window_bits, s.no_context_takeover), (9, true));
    let ci = Inflater::for_role(Role::Client, &p);
    assert_eq!((ci.window_bits, ci.no_context_takeover), (9, true));
    let si = Inflater::for_role(Role::Server, &p);
    assert_eq!((si.window_bits, si.no_context_takeover), (12, false));
    // The memory level comes from the options (Beast's memLevel, default 4), clamped.
    assert_eq!((c.mem_level, s.mem_level), (4, 4));
    let opts = PermessageDeflate {
        mem_level: 9,
        ..PermessageDeflate::default()
    };
    assert_eq!(Deflater::for_role(Role::Server, &p, &opts).mem_level, 9);
    assert_eq!(Deflater::new(8, 15, false).mem_level, 8);
    assert_eq!(Deflater::new(8, 15, false).with_mem_level(0).mem_level, 1);
    assert_eq!(Deflater::new(8, 15, false).with_mem_level(12).mem_level, 9);
}

/// The memory level reaches zlib: it bounds the symbols a block collects, so a large
/// message is coded in more blocks at a lower level (a different stream), and each level's
/// stream inflates back to the message.
#[test]
fn mem_level_is_applied() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let msg = sample(&mut rng, 64 * 1024);
    let wires: Vec<Vec<u8>> = [1, 4, 9]
        .iter()
        .map(|&level| {
            let mut d = Deflater::new(8, 15, false).with_mem_level(level);
            let wire = deflate_msg(&mut d, &msg, msg.len(), 1 << 20);
            assert_eq!(reference_inflate(&wire, 15), msg, "mem_level {level}");
            wire
        })
        .collect();
    assert_ne!(wires[0], wires[1]);
    assert_ne!(wires[1], wires[2]);
    // Beast's default (4) through the options gives the same stream as level 4 set directly.
    let mut d = Deflater::for_role(
        Role::Server,
        &PmdParams::default(),
        &PermessageDeflate::default(),
    );
    assert_eq!(deflate_msg(&mut d, &msg, msg.len(), 1 << 20), wires[1]);
}

/// Inflates a whole message with `inflate_into`: input in pieces of `piece` bytes, output
/// room of `room` bytes per call.
pub(super) fn inflate_bounded(
    i: &mut Inflater,
    wire: &[u8],
    piece: usize,
    room: usize,
    limit: usize,
) -> Result<Vec<u8>> {
    let mut text = Vec::new();
    let mut out = vec![0u8; room];
    let pieces: Vec<&[u8]> = if wire.is_empty() {
        vec![wire]
    } else {
        wire.chunks(piece).collect()
    };
    let mut calls = 0;
    for (k, mut p) in pieces.iter().copied().enumerate() {
        let last = k + 1 == pieces.len();
        loop {
            calls += 1;
            assert!(calls < 1000 + 4 * (wire.len() + limit.min(1 << 24)));
            let r = i.inflate_into(p, last, &mut out, limit)?;
            assert!(r.written <= room);
            text.extend_from_slice(&out[..r.written]);
            p = &p[r.consumed..];
            if r.done {
                break;
            }
        }
        assert!(p.is_empty());
    }
    Ok(text)
}

#[test]
fn bounded_inflate_matches_for_every_room_and_piece() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for &n in &[0usize, 1, 5, 100, 4096, 70_000] {
        let msg = sample(&mut rng, n);
        let wire = deflate_msg(&mut Deflater::new(6, 15, false), &msg, 1000, 4096);
        for &(piece, room) in &[
            (1usize, 1usize),
            (3, 2),
            (7, 1000),
            (100_000, 1),
            (100_000, 8192),
        ] {
            let mut i = Inflater::new(15, true);
            let got = inflate_bounded(&mut i, &wire, piece, room, usize::MAX).unwrap();
            assert!(got == msg, "n {n} piece {piece} room {room}");
        }
    }
    // Context takeover across messages, with room cutting the tail.
    let msg = sample(&mut rng, 3000);
    let mut d = Deflater::new(6, 15, false);
    let mut i = Inflater::new(15, false);
    for _ in 0..3 {
        let wire = deflate_msg(&mut d, &msg, 3000, 4096);
        assert_eq!(
            inflate_bounded(&mut i, &wire, 5, 3, usize::MAX).unwrap(),
            msg
        );
    }
}

#[test]
fn bounded_inflate_limits_and_errors() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    let wire = deflate_msg(&mut Deflater::new(9, 15, false), &zeros, 1 << 20, 1 << 20);
    drop(zeros);
    let mut i = Inflater::new(15, false);
    let r = inflate_bounded(&mut i, &wire, wire.len(), 64 * 1024, 1 << 20);
    assert_eq!(r, Err(Error::MessageTooBig));
    assert!(!i.is_allocated());
    let msg = vec![7u8; 5000];
    let wire = deflate_msg(&mut Deflater::new(8, 15, true), &msg, 5000, 4096);
    let exact = inflate_bounded(&mut Inflater::new(15, true), &wire, 10, 100, 5000);
    assert_eq!(exact.map(|v| v.len()), Ok(5000));
    let over = inflate_bounded(&mut Inflater::new(15, true), &wire, 10, 100, 4999);
    assert_eq!(over, Err(Error::MessageTooBig));
    let corrupt = inflate_bounded(&mut Inflater::new(15, true), &[0xff, 0xff, 0xff], 1, 4, 100);
    assert_eq!(corrupt, Err(Error::BadDeflateData));
    let mut empty = [0u8; 0];
    let r = Inflater::new(15, true).inflate_into(&wire, true, &mut empty, 100);
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
}

// ---------------------------------------------------------------- shared states

/// What `f` returns on a thread of its own, whose pools are empty: a fresh state's output.
pub(super) fn on_fresh_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap()
}

#[test]
fn compressors_without_context_takeover_share_reset_states() {
    let msg = sample(&mut rand::rngs::StdRng::seed_from_u64(21), 3000);
    let fresh = {
        let m = msg.clone();
        on_fresh_thread(move || deflate_msg(&mut Deflater::new(8, 15, true), &m, 3000, 4096))
    };
    assert_eq!(pool::pooled(), (0, 0));
    let mut a = Deflater::new(8, 15, true);
    assert_eq!(deflate_msg(&mut a, &msg, 3000, 4096), fresh);
    assert!(!a.is_allocated());
    assert_eq!(pool::pooled(), (1, 0));
    // A second compressor takes the first one's state: had it kept the first message's
    // history, the same message would now come out much shorter.
    let mut b = Deflater::new(8, 15, true);
    assert_eq!(deflate_msg(&mut b, &msg, 700, 4096), fresh);
    assert_eq!(deflate_msg(&mut a, &msg, 3000, 64), {
        let m = msg.clone();
        on_fresh_thread(move || deflate_msg(&mut Deflater::new(8, 15, true), &m, 3000, 64))
    });
    assert_eq!(pool::pooled(), (1, 0));
    // Other settings do not take it.
    let level1 = {
        let m = msg.clone();
        on_fresh_thread(move || deflate_msg(&mut Deflater::new(1, 15, true), &m, 3000, 4096))
    };
    assert_eq!(
        deflate_msg(&mut Deflater::new(1, 15, true), &msg, 3000, 4096),
        level1
    );
    let bits9 = deflate_msg(&mut Deflater::new(8, 9, true), &msg, 3000, 4096);
    assert_eq!(reference_inflate(&bits9, 9), msg);
    assert_eq!(pool::pooled(), (3, 0));
    // With context takeover a compressor keeps its state.
    let mut keeps = Deflater::new(8, 15, false);
    deflate_msg(&mut keeps, &msg, 3000, 4096);
    assert!(keeps.is_allocated());
    assert_eq!(pool::pooled(), (3, 0));
}

#[test]
fn a_message_in_progress_keeps_its_state() {
    let msg = sample(&mut rand::rngs::StdRng::seed_from_u64(22), 20_000);
    let mut out = Vec::new();
    let mut pending: Vec<(Deflater, Vec<u8>)> = Vec::new();
    for _ in 0..2 * pool::POOLED {
        let mut d = Deflater::new(8, 15, true);
        let mut wire = Vec::new();
        let p = d
            .compress(&msg[..10_000], false, &mut wire, 1 << 16)
            .unwrap();
        assert!(p.done && d.is_allocated());
        pending.push((d, wire));
    }
    assert_eq!(pool::pooled(), (0, 0));
    // Another message meanwhile gets a state of its own, and the others are unharmed.
    out.extend(deflate_msg(
        &mut Deflater::new(8, 15, true),
        &msg,
        20_000,
        1 << 16,
    ));
    assert_eq!(reference_inflate(&out, 15), msg);
    for (mut d, mut wire) in pending {
        let mut rest = &msg[10_000..];
        loop {
            let p = d.compress(rest, true, &mut wire, 1 << 16).unwrap();
            rest = &rest[p.consumed..];
            if p.done {
                break;
            }
        }
        assert!(!d.is_allocated());
        assert_eq!(reference_inflate(&wire, 15), msg);
    }
    // The pool keeps a bounded number; the rest were freed.
    assert_eq!(pool::pooled(), (pool::POOLED, 0));
}

#[test]
fn decompressors_without_context_takeover_share_reset_states() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(23);
    let msgs: Vec<Vec<u8>> = (0..6).map(|k| sample(&mut rng, 500 + 900 * k)).collect();
    let wires: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| deflate_msg(&mut Deflater::new(6, 15, true), m, m.len(), 1 << 16))
        .collect();
    assert_eq!(pool::pooled(), (1, 0));
    let mut inflaters: Vec<Inflater> = (0..3).map(|_| Inflater::new(15, true)).collect();
    for (k, (msg, wire)) in msgs.iter().zip(&wires).enumerate() {
        let i = &mut inflaters[k % 3];
        if k % 2 == 0 {
            assert_eq!(&inflate_msg(i, wire, 100).unwrap(), msg);
        } else {
            assert_eq!(&inflate_bounded(i, wire, 100, 333, 1 << 20).unwrap(), msg);
        }
        assert!(!i.is_allocated());
        assert_eq!(pool::pooled(), (1, 1));
    }
    // A message in progress keeps its state; a corrupt one drops it.
    let mut i = Inflater::new(15, true);
    i.inflate(&wires[5][..100], false, &mut Vec::new(), 1 << 20)
        .unwrap();
    assert!(i.is_allocated());
    assert_eq!(pool::pooled(), (1, 0));
    assert_eq!(
        inflate_msg(&mut Inflater::new(15, true), &[0xff, 0xff, 0xff], 1),
        Err(Error::BadDeflateData)
    );
    assert_eq!(pool::pooled(), (1, 0));
    let mut rest = Vec::new();
    i.inflate(&wires[5][100..], true, &mut rest, 1 << 20)
        .unwrap();
    assert_eq!(pool::pooled(), (1, 1));
    // Another window does not take it; with context takeover the state stays.
    let mut nine = Inflater::new(9, true);
    let wire9 = deflate_msg(&mut Deflater::new(6, 9, true), &msgs[0], 500, 4096);
    assert_eq!(inflate_msg(&mut nine, &wire9, 50).unwrap(), msgs[0]);
    assert_eq!(pool::pooled(), (2, 2));
    let mut keeps = Inflater::new(15, false);
    assert_eq!(inflate_msg(&mut keeps, &wires[0], 50).unwrap(), msgs[0]);
    assert!(keeps.is_allocated());
    assert_eq!(pool::pooled(), (2, 2));
}

#[test]
fn references_past_the_agreed_window_are_accepted() {
    // zlib-rs's decompressor keeps a 32 KiB window whatever the agreed window, so a peer
    // that refers further back than it agreed to is still understood (zlib would refuse
    // it once the reference leaves the output at hand). Listed in docs/porting.md.
    let half = sample(&mut rand::rngs::StdRng::seed_from_u64(24), 1000);
    let msg = [&half[..], &half[..]].concat();
    let too_far = deflate_msg(&mut Deflater::new(6, 15, true), &msg, 2000, 1 << 16);
    for reset in [true, false] {
        let mut i = Inflater::new(9, reset);
        let got = inflate_bounded(&mut i, &too_far, 2000, 1, usize::MAX);
        assert_eq!(got.as_deref(), Ok(&msg[..]), "reset {reset}");
    }
}
