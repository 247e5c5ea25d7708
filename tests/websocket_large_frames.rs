//! Large frames, whose payload is read straight into the caller's buffer: content, UTF-8
//! checks across reads, control frames between the frames of a message, the buffer's bound
//! and `read_some` limits, over loopback TCP and over the in-memory transport.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use rbeast::net::{FlatBuffer, IoContext, TcpStream, Transport};
use rbeast::test;
use rbeast::websocket::Stream;
use rbeast::{Error, Role};

mod common;
use common::{tcp_pair, Captured};

/// An open client and server over the in-memory transport, the server reading at most
/// `read_size` bytes per transport read.
fn memory_pair(ctx: &IoContext, read_size: usize) -> (Stream<test::Stream>, Stream<test::Stream>) {
    let (a, b) = test::Stream::pair(ctx);
    b.read_size(read_size);
    let (client, server) = (Stream::new(a), Stream::new(b));
    client.open_unchecked(Role::Client);
    server.open_unchecked(Role::Server);
    (client, server)
}

/// About `len` bytes of UTF-8 text whose multi-byte characters straddle every boundary.
fn text(len: usize) -> String {
    let mut s = String::with_capacity(len + 4);
    let pieces = ["a", "é", "€", "😀", "bc"];
    let mut i = 0;
    while s.len() < len {
        s.push_str(pieces[i % pieces.len()]);
        i += 1;
    }
    s
}

/// Sends `message` as one frame from `client`, reads it whole at `server` and returns
/// what the read completed with and what it appended.
fn one_frame_round_trip<T: Transport>(
    ctx: &IoContext,
    client: &Stream<T>,
    server: &Stream<T>,
    message: Bytes,
    buffer: FlatBuffer,
) -> (Result<(), Error>, Bytes) {
    client.set_auto_fragment(false);
    client.async_write(message, |_, _| {});
    let got = Captured::new();
    server.async_read(&buffer, got.result_handler());
    while !got.is_set() {
        ctx.run_one();
    }
    let r = got.take().unwrap();
    (r, buffer.take())
}

/// Sends about `len` bytes of text as one frame and checks that it arrives whole.
fn text_round_trip<T: Transport>(
    ctx: &IoContext,
    client: &Stream<T>,
    server: &Stream<T>,
    len: usize,
) {
    let message = text(len);
    let (r, got) = one_frame_round_trip(
        ctx,
        client,
        server,
        Bytes::from(message.clone()),
        FlatBuffer::new(),
    );
    assert_eq!(r, Ok(()));
    assert!(server.got_text() && server.is_message_done());
    assert!(got == message.as_bytes());
}

/// Sends `message` (not valid UTF-8) as one text frame; the client reads, so that it sees
/// the server's close frame and the teardown can end.
fn bad_text_round_trip<T: Transport>(
    ctx: &IoContext,
    client: &Stream<T>,
    server: &Stream<T>,
    message: Vec<u8>,
) -> (Result<(), Error>, Bytes) {
    client.set_binary(false);
    client.async_read(&FlatBuffer::new(), |r, _| assert_eq!(r, Err(Error::Closed)));
    one_frame_round_trip(ctx, client, server, Bytes::from(message), FlatBuffer::new())
}

#[test]
fn a_large_text_frame_arrives_whole_over_tcp() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    text_round_trip(&ctx, &client, &server, 3 << 20);
}

#[test]
fn a_large_text_frame_arrives_whole_over_short_in_memory_reads() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = memory_pair(&ctx, 70_001);
    text_round_trip(&ctx, &client, &server, 1 << 20);
}

#[test]
fn invalid_utf8_deep_in_a_large_text_frame_fails_the_read() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    let mut message = text(1 << 20).into_bytes();
    message.extend_from_slice(&[0xE2, 0x82]); // a truncated '€'
    message.extend_from_slice(b"tail");
    let (r, _) = bad_text_round_trip(&ctx, &client, &server, message);
    assert_eq!(r, Err(Error::BadFramePayload));
}

#[test]
fn a_large_frame_past_the_buffer_bound_overflows() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    client.set_binary(true);
    let message = Bytes::from(vec![9u8; 1 << 20]);
    let (r, _) = one_frame_round_trip(
        &ctx,
        &client,
        &server,
        message,
        FlatBuffer::with_max_size(300_000),
    );
    assert_eq!(r, Err(Error::BufferOverflow));
}

#[test]
fn a_ping_between_large_frames_is_answered_and_the_message_is_whole() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    client.set_binary(true);
    client.set_auto_fragment(false);
    let first: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let second: Vec<u8> = (0..900_000u32).map(|i| (i % 241) as u8).collect();
    let c = client.clone();
    let rest = Bytes::from(second.clone());
    client.async_write_some(false, Bytes::from(first.clone()), move |r, _| {
        r.unwrap();
        let c2 = c.clone();
        c.async_ping(b"between", move |r| {
            r.unwrap();
            c2.async_write_some(true, rest, |r, _| r.unwrap());
        });
    });
    let pongs = Rc::new(RefCell::new(Vec::new()));
    let p = pongs.clone();
    client.set_control_callback(move |kind, payload| p.borrow_mut().push((kind, payload.to_vec())));
    let buffer = FlatBuffer::new();
    let b = buffer.clone();
    let c = client.clone();
    server.async_read(&buffer, move |r, n| {
        assert_eq!((r, n), (Ok(()), 1_600_000));
        // Let the client see the pong.
        c.async_read(&b, |r, _| {
            assert_eq!(r, Err(rbeast::Error::OperationAborted))
        });
    });
    while pongs.borrow().is_empty() {
        ctx.run_one();
    }
    assert_eq!(&*buffer.data(), &[first, second].concat()[..]);
    assert_eq!(pongs.borrow()[0].1, b"between");
}

#[test]
fn read_some_limits_hold_for_large_frames() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    client.set_binary(true);
    client.set_auto_fragment(false);
    let message: Vec<u8> = (0..1_000_000u32).map(|i| (i % 239) as u8).collect();
    client.async_write(Bytes::from(message.clone()), |r, _| r.unwrap());
    let buffer = FlatBuffer::new();
    let total = Rc::new(RefCell::new(0usize));
    fn read_part(ws: Stream<TcpStream>, buffer: FlatBuffer, total: Rc<RefCell<usize>>) {
        let (w, b) = (ws.clone(), buffer.clone());
        ws.async_read_some(&buffer, 150_000, move |r, n| {
            r.unwrap();
            assert!(n > 0 && n <= 150_000, "{n}");
            *total.borrow_mut() += n;
            if !w.is_message_done() {
                read_part(w, b, total);
            }
        });
    }
    read_part(server.clone(), buffer.clone(), total.clone());
    while *total.borrow() < message.len() {
        ctx.run_one();
    }
    assert!(server.is_message_done());
    assert!(*buffer.data() == message[..]);
}

#[test]
fn a_medium_text_frame_unmasked_while_copied_survives_tiny_reads() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = memory_pair(&ctx, 97);
    text_round_trip(&ctx, &client, &server, 5000);
}

#[test]
fn invalid_utf8_in_a_medium_text_frame_appends_nothing_of_the_bad_piece() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = memory_pair(&ctx, 1 << 20);
    let mut message = text(3000).into_bytes();
    message.extend_from_slice(&[0xFF; 8]);
    let (r, got) = bad_text_round_trip(&ctx, &client, &server, message);
    assert_eq!(r, Err(Error::BadFramePayload));
    assert!(got.is_empty(), "{} bytes kept", got.len());
}

/// A header announcing far more payload than ever arrives, with no message size limit: a
/// read straight into the buffer reserves at most 1 MiB at a time, so memory follows the
/// bytes that come (before, the whole announced length was reserved at once, and a length
/// near 2^58 aborted the process). Reads of two bytes end exactly at the header with the
/// transport still readable, which is when the direct read is tried.
#[test]
fn an_announced_huge_frame_reserves_only_a_piece() {
    for len in [1u64 << 58, 1 << 40, 100 << 20] {
        let ctx = IoContext::new().unwrap();
        let transport = test::Stream::new(&ctx);
        transport.read_size(2);
        let client = Stream::new(transport);
        client.open_unchecked(Role::Client);
        client.set_read_message_max(0);
        let mut header = vec![0x82, 127];
        header.extend_from_slice(&len.to_be_bytes());
        client.next_layer().append(&header);
        let buffer = FlatBuffer::new();
        let got = Captured::new();
        client.async_read(&buffer, got.io_handler());
        ctx.poll();
        assert!(!got.is_set(), "{len}: the read waits for the payload");
        assert!(buffer.capacity() <= 2 << 20, "{len}: {}", buffer.capacity());
        // Bytes that arrive are delivered as usual.
        client.next_layer().append(&[7; 100]);
        ctx.poll();
        assert_eq!(&buffer.data()[..], &[7; 100][..], "{len}");
    }
}
