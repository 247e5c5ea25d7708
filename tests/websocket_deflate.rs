//! permessage-deflate in websocket::Stream: negotiation, compressed round trips in both
//! directions, framing on the wire, context takeover, limits and corrupt input, failure
//! injection, and loopback TCP.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::{parse_frames, random, Captured};
use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::proto::close::CloseCode;
use rbeast::proto::deflate::{Deflater, PermessageDeflate};
use rbeast::test::{self, fail_handler, success_handler, success_wait};
use rbeast::websocket::Stream;
use rbeast::Error;

type Ws = Stream<test::Stream>;

fn client_pmd() -> PermessageDeflate {
    PermessageDeflate {
        client_enable: true,
        ..Default::default()
    }
}

fn server_pmd() -> PermessageDeflate {
    PermessageDeflate {
        server_enable: true,
        ..Default::default()
    }
}

/// A connected pair after a handshake with these options.
fn connect(ctx: &IoContext, c: PermessageDeflate, s: PermessageDeflate) -> (Ws, Ws) {
    let (a, b) = test::Stream::pair(ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    client.set_permessage_deflate(c).unwrap();
    server.set_permessage_deflate(s).unwrap();
    server.async_accept(success_wait());
    client.async_handshake("h", "/", success_wait());
    ctx.run();
    assert!(client.is_open() && server.is_open());
    (client, server)
}

fn compressed_pair(ctx: &IoContext) -> (Ws, Ws) {
    connect(ctx, client_pmd(), server_pmd())
}

fn random_text(len: usize, seed: u64) -> Vec<u8> {
    random(len, seed)
        .into_iter()
        .map(|b| b'a' + b % 26)
        .collect()
}

/// Repetitive text.
fn compressible(len: usize) -> Vec<u8> {
    let words = b"{\"id\": 42, \"name\": \"rbeast\", \"tags\": [\"websocket\", \"deflate\"]}\n";
    words.iter().cycle().take(len).copied().collect()
}

/// Builds a frame, masked with `mask` when given.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => v.push(m | n as u8),
        n if n < 65536 => {
            v.push(m | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            v.push(m | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if let Some(k) = mask {
        v.extend_from_slice(&k);
    }
    let at = v.len();
    v.extend_from_slice(payload);
    if let Some(k) = mask {
        for (i, b) in v[at..].iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    v
}

/// A whole message compressed as a peer would (tail removed).
fn deflate(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut d = Deflater::new(9, 15, true);
    let mut input = msg;
    loop {
        let p = d.compress(input, true, &mut out, 1 << 20).unwrap();
        input = &input[p.consumed..];
        if p.done {
            return out;
        }
    }
}

/// Sends `msg` from `from` as one message and reads it whole at `to`; checks it.
fn round_trip(ctx: &IoContext, from: &Ws, to: &Ws, msg: &[u8], binary: bool) {
    from.set_binary(binary);
    let len = msg.len();
    from.async_write(bytes::Bytes::copy_from_slice(msg), move |r, n| {
        assert_eq!((r, n), (Ok(()), len));
    });
    let buf = FlatBuffer::new();
    let got = Captured::new();
    to.async_read(&buf, got.io_handler());
    ctx.run();
    assert_eq!(got.take(), Some((Ok(()), len)), "len {len}");
    assert!(*buf.data() == *msg, "payload differs, len {len}");
    assert_eq!(to.got_binary(), binary);
    assert!(to.is_message_done());
}

/// Reads the close frame the peer sent, via a read that ends with `Error::Closed`, and
/// returns its code.
fn close_code_seen_by(ctx: &IoContext, peer: &Ws) -> u16 {
    peer.async_read(&FlatBuffer::new(), fail_handler(Error::Closed));
    ctx.run();
    peer.reason().code.0
}

// ------------------------------------------------------------------------- negotiation

#[test]
fn negotiation_end_to_end() {
    let ctx = IoContext::new().unwrap();
    let c = PermessageDeflate {
        server_max_window_bits: 12,
        ..client_pmd()
    };
    let s = PermessageDeflate {
        client_max_window_bits: 10,
        ..server_pmd()
    };
    let (client, server) = connect(&ctx, c, s);
    for ws in [&client, &server] {
        let st = ws.permessage_deflate_status();
        assert!(st.active);
        assert_eq!((st.server_window_bits, st.client_window_bits), (12, 10));
    }
    // Compressed messages flow both ways with these windows.
    let msg = compressible(100_000);
    round_trip(&ctx, &client, &server, &msg, false);
    round_trip(&ctx, &server, &client, &msg, true);

    // Only one side enabled: inactive on both, and messages are plain.
    for (c, s) in [
        (client_pmd(), PermessageDeflate::default()),
        (PermessageDeflate::default(), server_pmd()),
    ] {
        let (client, server) = connect(&ctx, c, s);
        assert!(!client.permessage_deflate_status().active);
        assert!(!server.permessage_deflate_status().active);
        client.async_write(bytes::Bytes::from(compressible(1000)), |r, _| r.unwrap());
        ctx.run();
        let frames = parse_frames(&server.next_layer().input());
        assert!(frames.len() == 1 && !frames[0].rsv1);
        assert_eq!(frames[0].payload.len(), 1000);
    }
}

#[test]
fn option_validation_and_defaults() {
    let ctx = IoContext::new().unwrap();
    let (a, _b) = test::Stream::pair(&ctx);
    let ws = Stream::new(a);
    assert_eq!(ws.permessage_deflate(), PermessageDeflate::default());
    assert!(ws.compress());
    let bad = PermessageDeflate {
        client_max_window_bits: 8,
        client_enable: true,
        ..Default::default()
    };
    assert!(matches!(
        ws.set_permessage_deflate(bad),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!ws.permessage_deflate().client_enable);
}

// ------------------------------------------------------------------------- round trips

#[test]
fn round_trips_of_every_size_both_ways() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    let sizes = [0usize, 1, 100, 16 * 1024, 1 << 20];
    for (k, &len) in sizes.iter().enumerate() {
        let seed = k as u64 + 1;
        let cases = [
            (random(len, seed), true),
            (random_text(len, seed), false),
            (compressible(len), false),
            (compressible(len), true),
        ];
        for (msg, binary) in &cases {
            round_trip(&ctx, &client, &server, msg, *binary);
            round_trip(&ctx, &server, &client, msg, *binary);
        }
    }
}

#[test]
fn compression_happens_and_frames_follow_write_buffer_bytes() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    for auto_fragment in [true, false] {
        for (writer, reader) in [(&client, &server), (&server, &client)] {
            writer.set_auto_fragment(auto_fragment);
            writer.set_write_buffer_bytes(1000).unwrap();
            let msg = random_text(300_000, 7);
            let before = writer.next_layer().nwrite_bytes();
            writer.async_write(bytes::Bytes::from(msg.clone()), |r, n| {
                assert_eq!((r, n), (Ok(()), 300_000));
            });
            ctx.run();
            let sent = writer.next_layer().nwrite_bytes() - before;
            // 26 letters: about 4.7 bits a byte.
            assert!(sent < msg.len() * 3 / 4, "sent {sent}");
            let frames = parse_frames(&reader.next_layer().input());
            assert!(frames.len() > 100, "{}", frames.len());
            assert!(frames[0].rsv1 && frames[0].opcode == 1);
            for (i, f) in frames.iter().enumerate() {
                assert!(f.payload.len() <= 1000);
                assert_eq!(f.fin, i + 1 == frames.len());
                if i > 0 {
                    assert!(!f.rsv1 && f.opcode == 0, "frame {i}");
                }
            }
            let on_wire: usize = frames.iter().map(|f| f.payload.len()).sum();
            assert!(on_wire < sent);
            let buf = FlatBuffer::new();
            reader.async_read(&buf, |r, n| assert_eq!((r, n), (Ok(()), 300_000)));
            ctx.run();
            assert!(*buf.data() == msg[..]);
        }
    }
    // A compressible megabyte goes out in a few kilobytes.
    let before = client.next_layer().nwrite_bytes();
    round_trip(&ctx, &client, &server, &compressible(1 << 20), false);
    let sent = client.next_layer().nwrite_bytes() - before;
    assert!(sent < 40_000, "sent {sent}");
}

#[test]
fn compressed_frames_keep_the_write_buffer_bytes_of_their_message() {
    // As Beast, which sizes its write buffer as a message begins: a change in the middle of
    // a compressed message applies from the next message.
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    for (writer, reader) in [(&client, &server), (&server, &client)] {
        writer.set_write_buffer_bytes(4096).unwrap();
        let (a, b) = (random_text(20_000, 3), random_text(20_000, 6));
        writer.async_write_some(false, bytes::Bytes::from(a.clone()), success_handler());
        ctx.run();
        writer.set_write_buffer_bytes(500).unwrap();
        writer.async_write_some(true, bytes::Bytes::from(b.clone()), success_handler());
        ctx.run();
        let first = parse_frames(&reader.next_layer().input());
        assert!(first.last().unwrap().fin);
        let sizes: Vec<usize> = first.iter().map(|f| f.payload.len()).collect();
        // 40,000 letters compress to about 24 KB: frames of a 4096-byte chunk but the last
        // (less the four bytes the codec holds back, so that the `00 00 ff ff` tail is never
        // sent).
        assert!(
            sizes.len() >= 5
                && sizes[..sizes.len() - 1]
                    .iter()
                    .all(|n| (4092..=4096).contains(n)),
            "{sizes:?}"
        );
        let buf = FlatBuffer::new();
        reader.async_read(&buf, |r, n| assert_eq!((r, n), (Ok(()), 40_000)));
        ctx.run();
        assert!(buf.data()[..20_000] == a[..] && buf.data()[20_000..] == b[..]);
        // The next message is cut at the new size.
        let before = reader.next_layer().input().len();
        writer.async_write(
            bytes::Bytes::from(random_text(20_000, 8)),
            success_handler(),
        );
        ctx.run();
        let next = parse_frames(&reader.next_layer().input()[before..]);
        let sizes: Vec<usize> = next.iter().map(|f| f.payload.len()).collect();
        assert!(
            next.len() > 20 && sizes.iter().all(|&n| n <= 500),
            "{sizes:?}"
        );
        reader.async_read(&FlatBuffer::new(), |r, n| {
            assert_eq!((r, n), (Ok(()), 20_000))
        });
        ctx.run();
        writer.set_write_buffer_bytes(4096).unwrap();
    }
}

#[test]
fn a_write_that_waits_to_begin_its_message_keeps_its_compression_and_kind() {
    // Beast decides a message's compression and kind as its first write starts: options
    // changed while that write waits for room apply from the next message.
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    client.next_layer().write_capacity(10);
    // An uncompressed frame past the high-water mark: the output is full.
    client.set_compress(false);
    client.set_auto_fragment(false);
    client.set_binary(true);
    client.async_write(bytes::Bytes::from(random(100_000, 3)), success_handler());
    while ctx.poll() > 0 {}
    client.set_compress(true);
    client.set_binary(false);
    let text = compressible(5000);
    let done = Captured::new();
    client.async_write(bytes::Bytes::from(text.clone()), done.io_handler());
    client.set_compress(false);
    client.set_binary(true);
    // The reader takes both messages as they come, making room for the writer.
    let (first, second) = (FlatBuffer::new(), FlatBuffer::new());
    let (s, b2) = (server.clone(), second.clone());
    server.async_read(&first, move |r, n| {
        assert_eq!((r, n), (Ok(()), 100_000));
        s.async_read(&b2, |r, n| assert_eq!((r, n), (Ok(()), 5000)));
    });
    let mut turns = 0;
    while !done.is_set() || second.size() < 5000 {
        ctx.poll();
        turns += 1;
        assert!(
            turns < 1_000_000,
            "the messages never arrived: {} {} {} {} {} {}",
            done.is_set(),
            first.size(),
            second.size(),
            server.next_layer().input().len(),
            client.next_layer().nwrite_bytes(),
            server.next_layer().nread_bytes(),
        );
    }
    assert_eq!(done.take(), Some((Ok(()), 5000)));
    assert!(!server.got_binary(), "the second message is text");
    assert!(*second.data() == text[..]);
    // It went compressed: 5000 repetitive bytes took far fewer on the wire.
    let sent = client.next_layer().nwrite_bytes();
    assert!(sent < 100_000 + 1000, "sent {sent}");
}

#[test]
fn write_some_pieces_make_one_compressed_message() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    for (writer, reader) in [(&client, &server), (&server, &client)] {
        let msg = compressible(50_000);
        let pieces: Vec<&[u8]> = msg.chunks(7_001).collect();
        let taken = Rc::new(Cell::new(0usize));
        for (i, p) in pieces.iter().enumerate() {
            let t = taken.clone();
            let len = p.len();
            writer.async_write_some(
                i + 1 == pieces.len(),
                bytes::Bytes::copy_from_slice(p),
                move |r, n| {
                    assert_eq!((r, n), (Ok(()), len));
                    t.set(t.get() + n);
                },
            );
            ctx.run();
        }
        // A small non-final piece may produce nothing yet, but completes.
        assert_eq!(taken.get(), msg.len());
        let frames = parse_frames(&reader.next_layer().input());
        assert!(frames[0].rsv1 && frames.iter().skip(1).all(|f| !f.rsv1 && f.opcode == 0));
        assert!(frames.last().unwrap().fin);
        let buf = FlatBuffer::new();
        reader.async_read(&buf, |r, n| assert_eq!((r, n), (Ok(()), 50_000)));
        ctx.run();
        assert!(*buf.data() == msg[..]);
    }
    // A tiny non-final piece: nothing on the wire yet, and the write completes.
    let before = client.next_layer().nwrite_bytes();
    client.async_write_some(false, &b"hello "[..], |r, n| {
        assert_eq!((r, n), (Ok(()), 6))
    });
    ctx.run();
    assert_eq!(client.next_layer().nwrite_bytes(), before);
    client.async_write_some(true, &b"world"[..], |r, n| assert_eq!((r, n), (Ok(()), 5)));
    let buf = FlatBuffer::new();
    server.async_read(&buf, |r, n| assert_eq!((r, n), (Ok(()), 11)));
    ctx.run();
    assert_eq!(&*buf.data(), b"hello world");
}

#[test]
fn read_some_with_small_limits() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    for (msg, limit) in [
        (compressible(16 * 1024), 7usize),
        (random(16 * 1024, 3), 1000),
        (compressible(200_000), 4096),
        (b"x".to_vec(), 1),
    ] {
        let len = msg.len();
        client.set_binary(true);
        client.async_write(bytes::Bytes::from(msg.clone()), move |r, n| {
            assert_eq!((r, n), (Ok(()), len))
        });
        ctx.run();
        let buf = FlatBuffer::new();
        let mut calls = 0;
        loop {
            let got = Captured::new();
            server.async_read_some(&buf, limit, got.io_handler());
            ctx.run();
            let (r, n) = got.take().expect("read_some completed");
            r.unwrap();
            assert!(n <= limit, "{n} > {limit}");
            calls += 1;
            if server.is_message_done() {
                break;
            }
            assert!(n > 0 || calls < 3);
        }
        assert!(calls >= len / limit, "calls {calls}");
        assert!(*buf.data() == msg[..]);
    }
}

#[test]
fn one_byte_transport_io() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    for ws in [&client, &server] {
        ws.next_layer().read_size(1);
        ws.next_layer().write_size(1);
    }
    let msg = compressible(3000);
    round_trip(&ctx, &client, &server, &msg, false);
    round_trip(&ctx, &server, &client, &msg, true);
}

// ------------------------------------------------------------------------- context takeover

fn two_identical_messages(ctx: &IoContext, client: &Ws, server: &Ws) -> (usize, usize) {
    let msg = random_text(2000, 11);
    let mut sizes = Vec::new();
    for _ in 0..2 {
        let before = client.next_layer().nwrite_bytes();
        round_trip(ctx, client, server, &msg, false);
        sizes.push(client.next_layer().nwrite_bytes() - before);
    }
    (sizes[0], sizes[1])
}

#[test]
fn context_takeover_and_no_context_takeover() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    let (first, second) = two_identical_messages(&ctx, &client, &server);
    assert!(second * 4 < first, "takeover: {first} then {second}");

    let nct = PermessageDeflate {
        client_no_context_takeover: true,
        ..client_pmd()
    };
    let (client, server) = connect(&ctx, nct, server_pmd());
    let (first, second) = two_identical_messages(&ctx, &client, &server);
    assert_eq!(first, second, "no context takeover");
    // The server's direction keeps its context.
    let msg = random_text(2000, 12);
    let b0 = server.next_layer().nwrite_bytes();
    round_trip(&ctx, &server, &client, &msg, false);
    let b1 = server.next_layer().nwrite_bytes();
    round_trip(&ctx, &server, &client, &msg, false);
    let b2 = server.next_layer().nwrite_bytes();
    assert!((b2 - b1) * 4 < b1 - b0);
}

#[test]
fn streams_without_context_takeover_share_their_threads_states() {
    // Between messages such streams hold no compression state: the next message of any
    // stream on the thread takes a reset one. Messages in progress keep theirs.
    let ctx = IoContext::new().unwrap();
    let nct = PermessageDeflate {
        client_no_context_takeover: true,
        server_no_context_takeover: true,
        ..client_pmd()
    };
    let pairs: Vec<(Ws, Ws)> = (0..3).map(|_| connect(&ctx, nct, server_pmd())).collect();
    let (client, server) = &pairs[0];
    let long = random_text(60_000, 29);
    let before = client.next_layer().nwrite_bytes();
    client.async_write_some(
        false,
        bytes::Bytes::copy_from_slice(&long[..30_000]),
        |r, n| assert_eq!((r, n), (Ok(()), 30_000)),
    );
    ctx.run();
    assert!(client.next_layer().nwrite_bytes() - before > 1000);
    let got = FlatBuffer::new();
    let limited = FlatBuffer::with_max_size(1000);
    server.async_read_some(&limited, 1000, |r, n| assert_eq!((r, n), (Ok(()), 1000)));
    ctx.run();
    got.extend_from_slice(&limited.take()).unwrap();
    for (k, (c, s)) in pairs.iter().enumerate().skip(1) {
        let msg = random_text(3000, 30 + k as u64);
        let mut sizes = Vec::new();
        for _ in 0..2 {
            let (c0, s0) = (c.next_layer().nwrite_bytes(), s.next_layer().nwrite_bytes());
            round_trip(&ctx, c, s, &msg, false);
            round_trip(&ctx, s, c, &msg, true);
            sizes.push((
                c.next_layer().nwrite_bytes() - c0,
                s.next_layer().nwrite_bytes() - s0,
            ));
        }
        // The same message compresses the same each time: no history is kept or shared.
        assert_eq!(sizes[0], sizes[1]);
        assert!(sizes[0].0 < 2500 && sizes[0].1 < 2500, "{sizes:?}");
    }
    client.async_write_some(
        true,
        bytes::Bytes::copy_from_slice(&long[30_000..]),
        |r, n| assert_eq!((r, n), (Ok(()), 30_000)),
    );
    let rest = FlatBuffer::new();
    server.async_read(&rest, |r, n| assert_eq!((r, n), (Ok(()), 59_000)));
    ctx.run();
    got.extend_from_slice(&rest.data()).unwrap();
    assert!(*got.data() == long[..]);
    round_trip(&ctx, server, client, &long, false);
}

#[test]
fn a_small_compressed_message_takes_little_room_in_the_buffer() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    let buf = FlatBuffer::new();
    client.async_write(bytes::Bytes::from(random_text(1000, 40)), |r, n| {
        assert_eq!((r, n), (Ok(()), 1000))
    });
    server.async_read(&buf, |r, n| assert_eq!((r, n), (Ok(()), 1000)));
    ctx.run();
    assert!(buf.capacity() <= 4096, "{}", buf.capacity());
    // A large one still reads in few, growing steps.
    let msg = compressible(1 << 20);
    round_trip(&ctx, &client, &server, &msg, false);
}

// ------------------------------------------------------------------------- uncompressed

#[test]
fn threshold_and_compress_switch_send_plain_messages() {
    let ctx = IoContext::new().unwrap();
    let c = PermessageDeflate {
        msg_size_threshold: 100,
        ..client_pmd()
    };
    let (client, server) = connect(&ctx, c, server_pmd());
    let small = compressible(99);
    client.async_write(bytes::Bytes::from(small.clone()), |r, _| r.unwrap());
    ctx.run();
    let frames = parse_frames(&server.next_layer().input());
    assert!(frames.len() == 1 && !frames[0].rsv1 && frames[0].payload == small);
    round_trip_read(&ctx, &server, &small);

    // At the threshold: compressed. The threshold looks at the first write only.
    let big = compressible(100);
    client.async_write(bytes::Bytes::from(big.clone()), |r, _| r.unwrap());
    ctx.run();
    let frames = parse_frames(&server.next_layer().input());
    assert!(frames.len() == 1 && frames[0].rsv1 && frames[0].payload.len() < 100);
    round_trip_read(&ctx, &server, &big);

    // compress(false): plain, latched at message start.
    client.set_compress(false);
    client.async_write(bytes::Bytes::from(compressible(5000)), |r, _| r.unwrap());
    ctx.run();
    let frames = parse_frames(&server.next_layer().input());
    assert!(!frames.is_empty() && frames.iter().all(|f| !f.rsv1));
    assert_eq!(frames.iter().map(|f| f.payload.len()).sum::<usize>(), 5000);
    round_trip_read(&ctx, &server, &compressible(5000));
    client.set_compress(true);
    round_trip(&ctx, &client, &server, &compressible(5000), false);
}

fn round_trip_read(ctx: &IoContext, ws: &Ws, want: &[u8]) {
    let buf = FlatBuffer::new();
    let n = want.len();
    ws.async_read(&buf, move |r, got| assert_eq!((r, got), (Ok(()), n)));
    ctx.run();
    assert!(*buf.data() == *want);
}

// ------------------------------------------------------------------------- bad input

const KEY: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

#[test]
fn a_deflate_bomb_is_message_too_big_with_bounded_memory() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    server.set_read_message_max(1 << 20);
    let wire = deflate(&vec![0u8; 10 * 1000 * 1000]);
    assert!(wire.len() < 20_000);
    server
        .next_layer()
        .append(&frame(true, true, 2, &wire, KEY));
    let buf = FlatBuffer::new();
    let seen = Rc::new(Cell::new(0usize));
    let s = seen.clone();
    server.async_read(&buf, move |r, n| {
        assert_eq!(r, Err(Error::MessageTooBig));
        s.set(n);
    });
    assert_eq!(close_code_seen_by(&ctx, &client), 1009);
    assert!(seen.get() <= 1 << 20);
    assert!(buf.size() <= 1 << 20);
    // The buffer grows by doubling: at most twice the limit, far from the 10 MB inflated.
    assert!(
        buf.capacity() <= 2 * (1 << 20) + 128 * 1024,
        "{}",
        buf.capacity()
    );

    // Under the limit it is delivered.
    let (client, server) = compressed_pair(&ctx);
    server.set_read_message_max(1 << 20);
    let msg = vec![0u8; 1 << 20];
    server
        .next_layer()
        .append(&frame(true, true, 2, &deflate(&msg), KEY));
    round_trip_read(&ctx, &server, &msg);
    drop(client);
}

#[test]
fn corrupt_compressed_data_is_bad_deflate_data_and_1007() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    server
        .next_layer()
        .append(&frame(true, true, 2, &[0xff, 0xff, 0xff, 0x01], KEY));
    server.async_read(&FlatBuffer::new(), fail_handler(Error::BadDeflateData));
    assert_eq!(close_code_seen_by(&ctx, &client), 1007);

    // The same at a client, from a server's unmasked frame.
    let (client, server) = compressed_pair(&ctx);
    client
        .next_layer()
        .append(&frame(true, true, 1, &[0x07], None));
    client.async_read(&FlatBuffer::new(), fail_handler(Error::BadDeflateData));
    assert_eq!(close_code_seen_by(&ctx, &server), 1007);
}

#[test]
fn invalid_utf8_after_inflation_is_bad_frame_payload() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    let wire = deflate(b"ok \xff\xfe bad");
    server
        .next_layer()
        .append(&frame(true, true, 1, &wire, KEY));
    server.async_read(&FlatBuffer::new(), fail_handler(Error::BadFramePayload));
    assert_eq!(close_code_seen_by(&ctx, &client), 1007);
    // As binary, the same bytes are fine.
    let (_client, server) = compressed_pair(&ctx);
    server
        .next_layer()
        .append(&frame(true, true, 2, &wire, KEY));
    round_trip_read(&ctx, &server, b"ok \xff\xfe bad");
}

#[test]
fn invalid_utf8_after_inflation_leaves_only_the_reported_bytes_in_the_buffer() {
    // Whole, and read three bytes at a time so that valid text is delivered first.
    for read_size in [usize::MAX, 3] {
        let ctx = IoContext::new().unwrap();
        let (client, server) = compressed_pair(&ctx);
        let wire = deflate(b"valid text, then \xfe");
        server.next_layer().read_size(read_size);
        server
            .next_layer()
            .append(&frame(true, true, 1, &wire, KEY));
        let buffer = FlatBuffer::new();
        let outcome = Captured::new();
        server.async_read(&buffer, outcome.io_handler());
        assert_eq!(close_code_seen_by(&ctx, &client), 1007);
        let (r, n) = outcome.take().expect("the read completed");
        assert_eq!(r, Err(Error::BadFramePayload), "read size {read_size}");
        assert_eq!(buffer.size(), n, "read size {read_size}");
        assert!(std::str::from_utf8(&buffer.data()).is_ok());
    }
}

#[test]
fn rsv1_on_a_continuation_or_without_negotiation_is_bad_reserved_bits() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = compressed_pair(&ctx);
    let wire = deflate(b"hello");
    let mut bytes = frame(false, true, 1, &wire[..2], KEY);
    bytes.extend(frame(true, true, 0, &wire[2..], KEY));
    server.next_layer().append(&bytes);
    server.async_read(&FlatBuffer::new(), fail_handler(Error::BadReservedBits));
    assert_eq!(close_code_seen_by(&ctx, &client), 1002);

    let (client, server) = connect(&ctx, PermessageDeflate::default(), server_pmd());
    server
        .next_layer()
        .append(&frame(true, true, 1, &wire, KEY));
    server.async_read(&FlatBuffer::new(), fail_handler(Error::BadReservedBits));
    assert_eq!(close_code_seen_by(&ctx, &client), 1002);
}

#[test]
fn compressed_message_split_over_frames_and_interleaved_control() {
    let ctx = IoContext::new().unwrap();
    let (_client, server) = compressed_pair(&ctx);
    let msg = compressible(20_000);
    let wire = deflate(&msg);
    let mut bytes = frame(false, true, 1, &wire[..1], KEY);
    bytes.extend(frame(false, false, 0, &[], KEY));
    bytes.extend(frame(true, false, 9, b"ping", KEY));
    bytes.extend(frame(false, false, 0, &wire[1..wire.len() / 2], KEY));
    bytes.extend(frame(true, false, 0, &wire[wire.len() / 2..], KEY));
    // The next message ends with an empty final frame.
    bytes.extend(frame(false, true, 1, &wire, KEY));
    bytes.extend(frame(true, false, 0, &[], KEY));
    server.next_layer().append(&bytes);
    round_trip_read(&ctx, &server, &msg);
    round_trip_read(&ctx, &server, &msg);
}

// ------------------------------------------------------------------------- failures

/// A compressed echo: the client sends two messages and reads the echoes, then closes.
/// The transport of `fail_client ? client : server` fails at the counter's point.
fn compressed_echo(fc: test::FailCount, fail_client: bool) -> Result<(), Error> {
    let ctx = IoContext::new().unwrap();
    let (a, b) = test::Stream::pair(&ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    client.set_permessage_deflate(client_pmd()).unwrap();
    server.set_permessage_deflate(server_pmd()).unwrap();
    for ws in [&client, &server] {
        ws.next_layer().write_size(300);
        ws.set_write_buffer_bytes(256).unwrap();
    }
    let failing = if fail_client { &client } else { &server };
    failing.next_layer().set_fail_count(fc);
    let result = Rc::new(RefCell::new(Ok(())));
    let record = {
        let result = result.clone();
        let transports = [client.next_layer().clone(), server.next_layer().clone()];
        Rc::new(move |r: Result<(), Error>| {
            if let Err(e) = r {
                for t in &transports {
                    t.close();
                }
                let mut slot = result.borrow_mut();
                if slot.is_ok() && e != Error::OperationAborted {
                    *slot = Err(e);
                }
            }
        })
    };
    fn echo(ws: Ws, buf: FlatBuffer, record: Rc<dyn Fn(Result<(), Error>)>) {
        let (w, b) = (ws.clone(), buf.clone());
        ws.async_read(&buf, move |r, _| {
            if r == Err(Error::Closed) {
                return;
            }
            if r.is_err() {
                record(r);
                return;
            }
            w.set_binary(w.got_binary());
            let (w2, rec) = (w.clone(), record.clone());
            w.async_write(b.take(), move |r, _| {
                if r.is_ok() {
                    echo(w2, b, rec);
                } else {
                    rec(r);
                }
            });
        });
    }
    let (s, rec) = (server.clone(), record.clone());
    server.async_accept(move |r| {
        if r.is_ok() {
            echo(s, FlatBuffer::new(), rec);
        } else {
            rec(r);
        }
    });
    let messages = [compressible(5000), random_text(3000, 5)];
    let got = Rc::new(RefCell::new(Vec::new()));
    fn send(
        ws: Ws,
        rest: Vec<Vec<u8>>,
        got: Rc<RefCell<Vec<Vec<u8>>>>,
        rec: Rc<dyn Fn(Result<(), Error>)>,
    ) {
        let Some((msg, rest)) = rest.split_first() else {
            ws.async_close(CloseCode::NORMAL, move |r| rec(r));
            return;
        };
        let rest = rest.to_vec();
        let r1 = rec.clone();
        ws.async_write(bytes::Bytes::from(msg.clone()), move |r, _| r1(r));
        let (w, buf) = (ws.clone(), FlatBuffer::new());
        let b = buf.clone();
        ws.async_read(&buf, move |r, _| {
            if r.is_err() {
                rec(r);
                return;
            }
            got.borrow_mut().push(b.take().to_vec());
            send(w, rest, got, rec);
        });
    }
    let (c, g, rec, sent) = (
        client.clone(),
        got.clone(),
        record.clone(),
        messages.clone(),
    );
    client.async_handshake("h", "/", move |r| {
        if r.is_ok() {
            send(c, sent.to_vec(), g, rec);
        } else {
            rec(r);
        }
    });
    ctx.run();
    let r = result.borrow().clone();
    if r.is_ok() {
        assert_eq!(*got.borrow(), messages.to_vec());
        assert!(client.permessage_deflate_status().active);
    }
    r
}

#[test]
fn every_failure_point_of_a_compressed_echo_surfaces_as_the_injected_error() {
    for fail_client in [true, false] {
        let n = test::fail_loop(1000, |fc| compressed_echo(fc, fail_client));
        assert!(n > 5, "n {n}");
    }
}

// ------------------------------------------------------------------------- TCP

#[test]
fn compressed_echo_over_loopback_tcp() {
    echo_over_loopback_tcp(None);
}

#[test]
fn compressed_echo_over_loopback_tcp_freeing_idle_states() {
    // Both ends free their zlib states as soon as a loop turn passes after a message, so
    // most messages start from states rebuilt from the kept windows.
    echo_over_loopback_tcp(Some(std::time::Duration::ZERO));
}

fn echo_over_loopback_tcp(idle_release: Option<std::time::Duration>) {
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    acceptor.async_accept(move |r| {
        let ws = Stream::new(r.unwrap());
        ws.set_permessage_deflate(PermessageDeflate {
            server_enable: true,
            comp_level: 3,
            idle_release,
            ..Default::default()
        })
        .unwrap();
        ws.set_auto_fragment(false);
        let w = ws.clone();
        ws.async_accept(move |r| {
            r.unwrap();
            fn echo(ws: Stream<TcpStream>, buf: FlatBuffer) {
                let (w, b) = (ws.clone(), buf.clone());
                ws.async_read(&buf, move |r, _| {
                    if r.is_err() {
                        return; // Closed at the end
                    }
                    w.set_binary(w.got_binary());
                    let w2 = w.clone();
                    w.async_write(b.take(), move |r, _| {
                        if r.is_ok() {
                            echo(w2, b);
                        }
                    });
                });
            }
            echo(w, FlatBuffer::new());
        });
    });
    let sock = TcpStream::new(&ctx);
    let ws = Stream::new(sock.clone());
    ws.set_permessage_deflate(PermessageDeflate {
        idle_release,
        ..client_pmd()
    })
    .unwrap();
    let done = Rc::new(RefCell::new(Vec::new()));
    let d = done.clone();
    type Done = Rc<RefCell<Vec<usize>>>;
    fn send(ws: Stream<TcpStream>, sizes: Vec<usize>, done: Done) {
        let Some((&len, rest)) = sizes.split_first() else {
            ws.async_close(CloseCode::NORMAL, |r| r.unwrap());
            return;
        };
        let rest = rest.to_vec();
        let payload = if len % 2 == 0 {
            compressible(len)
        } else {
            random(len, len as u64)
        };
        let expected = payload.clone();
        ws.async_write(bytes::Bytes::from(payload), move |r, n| {
            assert_eq!((r, n), (Ok(()), len))
        });
        let (w, buf) = (ws.clone(), FlatBuffer::new());
        let b = buf.clone();
        ws.async_read(&buf, move |r, n| {
            r.unwrap();
            assert_eq!(n, len);
            assert!(*b.data() == expected[..]);
            done.borrow_mut().push(len);
            send(w, rest, done);
        });
    }
    let w = ws.clone();
    sock.async_connect(addr, move |r| {
        r.unwrap();
        let w2 = w.clone();
        w.async_handshake(&format!("127.0.0.1:{}", addr.port()), "/", move |r| {
            r.unwrap();
            assert!(w2.permessage_deflate_status().active);
            w2.set_binary(true);
            let sizes = vec![0usize, 1, 100, 16 * 1024, 65_537, 1 << 20, (1 << 20) + 1];
            send(w2, sizes, d);
        });
    });
    ctx.run();
    assert_eq!(done.borrow().len(), 7);
}
