//! The behaviours the Autobahn|Testsuite grades (RFC 6455 cases 1.* to 10.*), checked in
//! memory: raw frames are appended to a lone stream, then the bytes it sends back and the
//! read's result are compared with what the suite expects (and Beast does). The case
//! numbers in the comments are the suite's. `scripts/autobahn.sh` runs the suite itself.

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::{FlatBuffer, IoContext};
use rbeast::proto::close::CloseCode;
use rbeast::test;
use rbeast::websocket::Stream;
use rbeast::{Error, Role};

mod common;
use common::{masked, Captured};

type Ws = Stream<test::Stream>;

/// An unmasked frame as a server sends it (payload under 126 bytes).
fn unmasked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut f = vec![first, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [&code.to_be_bytes()[..], reason].concat()
}

/// A stream in `role` over a lone transport.
fn lone(ctx: &IoContext, role: Role) -> Ws {
    let ws = Stream::new(test::Stream::new(ctx));
    ws.open_unchecked(role);
    ws
}

/// What one read did: its result, the message it delivered, the bytes the stream sent.
#[derive(Debug)]
struct Outcome {
    result: Result<(), Error>,
    message: Vec<u8>,
    sent: Vec<u8>,
}

/// Feeds `input` to a stream in `role`, ends the peer's side, and runs one whole read.
fn read_once(role: Role, input: &[u8], setup: impl FnOnce(&Ws)) -> Outcome {
    read_once_into(FlatBuffer::new(), role, input, setup)
}

/// As [`read_once`], reading into `buf`.
fn read_once_into(buf: FlatBuffer, role: Role, input: &[u8], setup: impl FnOnce(&Ws)) -> Outcome {
    let ctx = IoContext::new().unwrap();
    let ws = lone(&ctx, role);
    setup(&ws);
    ws.next_layer().append(input);
    ws.next_layer().close_remote();
    let got = Captured::new();
    ws.async_read(&buf, got.result_handler());
    ctx.run();
    let result = got.take().expect("the read completed");
    let sent = ws.next_layer().take_output().to_vec();
    let message = buf.data().to_vec();
    Outcome {
        result,
        message,
        sent,
    }
}

/// The close code in the first frame of `sent` (a server's, unmasked), if it is a close.
fn close_code_sent(sent: &[u8]) -> Option<u16> {
    (sent.len() >= 4 && sent[0] == 0x88 && sent[1] >= 2)
        .then(|| u16::from_be_bytes([sent[2], sent[3]]))
}

fn server_close(code: u16) -> Vec<u8> {
    unmasked(0x88, &code.to_be_bytes())
}

/// 6.4.1 to 6.4.4: invalid UTF-8 fails the connection as soon as the bad bytes arrive,
/// before the rest of the frame (or of the message) does.
#[test]
fn invalid_utf8_fails_fast_inside_a_frame_whose_rest_has_not_arrived() {
    let ctx = IoContext::new().unwrap();
    let ws = lone(&ctx, Role::Server);
    // A final text frame announced as 21 bytes; only the first 9 arrive, the last two of
    // which (f4 90) can start no valid sequence (above U+10FFFF).
    let valid = "κόok".as_bytes();
    let payload: Vec<u8> = [valid, b"\xf4\x90", &[b'x'; 12]].concat();
    let frame = masked(0x81, &payload);
    let header_len = 6;
    ws.next_layer()
        .append(&frame[..header_len + valid.len() + 2]);
    let got = Captured::new();
    ws.async_read(&FlatBuffer::new(), got.result_handler());
    ctx.poll();
    assert_eq!(
        close_code_sent(&ws.next_layer().take_output()),
        Some(1007),
        "the close frame went out while the frame was still incomplete"
    );
    ws.next_layer().close_remote();
    ctx.run();
    assert_eq!(got.take(), Some(Err(Error::BadFramePayload)));
}

/// 6.4.1/6.4.2: the same, when the bad bytes are in a later fragment of the message.
#[test]
fn invalid_utf8_fails_fast_in_a_later_fragment() {
    let mut input = masked(0x01, "κόσμε".as_bytes());
    input.extend(masked(0x00, b"\xed\xa0\x80")); // a UTF-16 surrogate
    let out = read_once(Role::Server, &input, |_| {});
    assert_eq!(out.result, Err(Error::BadFramePayload));
    assert_eq!(close_code_sent(&out.sent), Some(1007));
}

/// 6.2.*, 6.3.*: code points split across fragments (one byte per frame) are valid; a
/// message that ends inside a sequence is not.
#[test]
fn utf8_is_validated_across_fragments_and_at_the_end_of_the_message() {
    let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞";
    let bytes = text.as_bytes();
    let mut input = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        let opcode = if i == 0 { 0x01 } else { 0x00 };
        let fin = if i + 1 == bytes.len() { 0x80 } else { 0 };
        input.extend(masked(fin | opcode, &[*b]));
    }
    let out = read_once(Role::Server, &input, |_| {});
    assert_eq!(out.result, Ok(()));
    assert_eq!(out.message, bytes);
    assert!(out.sent.is_empty());

    // The last fragment stops after the first byte of a 4-byte sequence.
    let mut input = masked(0x01, b"ok");
    input.extend(masked(0x80, b"\xf0"));
    let out = read_once(Role::Server, &input, |_| {});
    assert_eq!(out.result, Err(Error::BadFramePayload));
    assert_eq!(close_code_sent(&out.sent), Some(1007));
}

/// 5.6 to 5.9: a ping between the fragments of a message is answered at once, and the
/// message still arrives whole.
#[test]
fn a_ping_between_fragments_is_answered_before_the_message_ends() {
    let ctx = IoContext::new().unwrap();
    let ws = lone(&ctx, Role::Server);
    let mut input = masked(0x01, b"fragment1");
    input.extend(masked(0x89, b"ping payload"));
    ws.next_layer().append(&input);
    let buf = FlatBuffer::new();
    let got = Captured::new();
    ws.async_read(&buf, got.io_handler());
    ctx.poll();
    assert_eq!(
        &ws.next_layer().take_output()[..],
        &unmasked(0x8a, b"ping payload")[..],
        "the pong went out before the last fragment arrived"
    );
    assert!(!got.is_set());
    ws.next_layer().append(&masked(0x80, b"fragment2"));
    ctx.run();
    assert_eq!(got.take(), Some((Ok(()), 18)));
    assert_eq!(&*buf.data(), b"fragment1fragment2");
}

/// 2.4, 2.5, 5.1, 5.2: control frames carry at most 125 bytes and are never fragmented;
/// a 125-byte ping gets the same payload back.
#[test]
fn control_frames_up_to_125_bytes_are_answered_and_others_rejected() {
    let payload = [0xfe_u8; 125];
    let mut input = masked(0x89, &payload);
    input.extend(masked(0x88, &close_payload(1000, b"")));
    let out = read_once(Role::Server, &input, |_| {});
    assert_eq!(out.result, Err(Error::Closed));
    let mut pong = vec![0x8a, 125];
    pong.extend_from_slice(&payload);
    assert_eq!(&out.sent[..pong.len()], &pong[..]);
    assert_eq!(close_code_sent(&out.sent[pong.len()..]), Some(1000));

    for (input, error) in [
        (masked(0x89, &[0u8; 126]), Error::BadControlSize),
        (masked(0x09, b"frag"), Error::BadControlFragment),
        (masked(0x0a, b"frag"), Error::BadControlFragment),
        (masked(0x99, b""), Error::BadReservedBits), // 3.7: RSV on a ping
        (masked(0xa1, b"x"), Error::BadReservedBits), // 3.2: RSV2 on text
        (masked(0xf1, b"x"), Error::BadReservedBits), // 3.6: all RSV bits
    ] {
        let out = read_once(Role::Server, &input, |_| {});
        assert_eq!(out.result, Err(error.clone()), "{error:?}");
        assert_eq!(close_code_sent(&out.sent), Some(1002), "{error:?}");
    }
}

/// 4.1.*, 4.2.*: every reserved opcode fails the connection with 1002, also after a
/// valid message was delivered.
#[test]
fn reserved_opcodes_are_rejected_with_1002() {
    for opcode in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        let out = read_once(Role::Server, &masked(0x80 | opcode, b""), |_| {});
        assert_eq!(out.result, Err(Error::BadOpcode), "opcode {opcode:#x}");
        assert_eq!(close_code_sent(&out.sent), Some(1002), "opcode {opcode:#x}");
    }
}

/// 7.1.5: a close frame in the middle of a fragmented message is a normal close (the
/// reply echoes its code), not a protocol error.
#[test]
fn a_close_in_the_middle_of_a_fragmented_message_is_a_normal_close() {
    let mut input = masked(0x01, b"fragment1");
    input.extend(masked(0x88, &close_payload(1000, b"")));
    input.extend(masked(0x80, b"fragment2"));
    let out = read_once(Role::Server, &input, |_| {});
    assert_eq!(out.result, Err(Error::Closed));
    assert_eq!(out.sent, server_close(1000));
}

/// 7.3.*, 7.7.*: a close frame with a valid code (or none) is answered with that code
/// (1000 for none), with no reason text, and the read ends with `Closed`.
#[test]
fn valid_close_codes_are_echoed() {
    let out = read_once(Role::Server, &masked(0x88, b""), |_| {});
    assert_eq!(out.result, Err(Error::Closed));
    assert_eq!(out.sent, server_close(1000));
    assert_eq!(
        read_once(Role::Server, &masked(0x88, b""), |_| {})
            .result
            .err(),
        Some(Error::Closed)
    );
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let input = masked(0x88, &close_payload(code, "reason µ".as_bytes()));
        let ctx = IoContext::new().unwrap();
        let ws = lone(&ctx, Role::Server);
        ws.next_layer().append(&input);
        ws.next_layer().close_remote();
        let got = Captured::new();
        ws.async_read(&FlatBuffer::new(), got.result_handler());
        ctx.run();
        assert_eq!(got.take(), Some(Err(Error::Closed)), "{code}");
        assert_eq!(
            ws.next_layer().take_output().to_vec(),
            server_close(code),
            "{code}"
        );
        assert_eq!(ws.reason().code, CloseCode(code));
        assert_eq!(ws.reason().reason(), "reason µ");
    }
}

/// 7.3.2, 7.5.1, 7.9.*: a 1-byte close payload, a reserved or out-of-range code, or a
/// reason that is not UTF-8 fail the connection with 1002.
#[test]
fn invalid_close_frames_are_answered_with_1002() {
    let mut cases = vec![
        (masked(0x88, b"\x03"), Error::BadCloseSize),
        (
            masked(
                0x88,
                &close_payload(
                    1000,
                    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
                ),
            ),
            Error::BadClosePayload,
        ),
    ];
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999] {
        cases.push((masked(0x88, &close_payload(code, b"")), Error::BadCloseCode));
    }
    for (input, error) in cases {
        let out = read_once(Role::Server, &input, |_| {});
        assert_eq!(out.result, Err(error.clone()), "{input:x?}");
        assert_eq!(close_code_sent(&out.sent), Some(1002), "{input:x?}");
    }
}

/// 9.3.1, 9.4.1: a 4 MiB message in 64-byte fragments (65,536 frames) arrives whole.
#[test]
fn a_4_mib_message_in_64_byte_fragments_arrives_whole() {
    let payload: Vec<u8> = (0..4usize << 20).map(|i| (i % 253) as u8).collect();
    let mut input = Vec::with_capacity(payload.len() / 64 * 70);
    for (i, chunk) in payload.chunks(64).enumerate() {
        let opcode = if i == 0 { 0x02 } else { 0x00 };
        let fin = if (i + 1) * 64 >= payload.len() {
            0x80
        } else {
            0
        };
        input.extend(masked(fin | opcode, chunk));
    }
    let out = read_once(Role::Server, &input, |ws| ws.set_read_message_max(64 << 20));
    assert_eq!(out.result, Ok(()));
    assert!(out.message == payload, "the message arrived intact");
    assert!(out.sent.is_empty());
}

/// 9.1.6, 9.2.6 with a smaller bound: `read_message_max` bounds the whole message, summed
/// over its fragments, and is answered with 1009.
#[test]
fn read_message_max_bounds_the_sum_of_the_fragments() {
    let mut input = masked(0x02, &[1u8; 60]);
    input.extend(masked(0x80, &[2u8; 60]));
    let out = read_once(Role::Server, &input, |ws| ws.set_read_message_max(100));
    assert_eq!(out.result, Err(Error::MessageTooBig));
    assert_eq!(close_code_sent(&out.sent), Some(1009));

    let out = read_once(Role::Server, &input, |ws| ws.set_read_message_max(120));
    assert_eq!(out.result, Ok(()));
    assert_eq!(out.message.len(), 120);
}

/// The client role (the suite's fuzzingserver): frames from the server must be unmasked,
/// and the client's own close reply is masked.
#[test]
fn a_client_rejects_masked_frames_and_masks_its_close_reply() {
    let out = read_once(Role::Client, &masked(0x81, b"masked"), |_| {});
    assert_eq!(out.result, Err(Error::BadMaskedFrame));
    assert!(out.sent.len() == 8 && out.sent[0] == 0x88 && out.sent[1] == 0x82);
    let key = [out.sent[2], out.sent[3], out.sent[4], out.sent[5]];
    let code = [out.sent[6] ^ key[0], out.sent[7] ^ key[1]];
    assert_eq!(u16::from_be_bytes(code), 1002);

    let mut input = unmasked(0x81, b"Hello");
    input.extend(server_close(1000));
    let ctx = IoContext::new().unwrap();
    let ws = lone(&ctx, Role::Client);
    ws.next_layer().append(&input);
    ws.next_layer().close_remote();
    let buf = FlatBuffer::new();
    ws.async_read(&buf, |r, n| assert_eq!((r, n), (Ok(()), 5)));
    ctx.run();
    assert_eq!(&*buf.data(), b"Hello");
    let w = ws.clone();
    ws.async_read(&FlatBuffer::new(), move |r, _| {
        assert_eq!(r, Err(Error::Closed));
        assert!(!w.is_open());
    });
    ctx.run();
    let sent = ws.next_layer().take_output();
    assert_eq!(&sent[..2], &[0x88, 0x82]);
    assert_eq!(
        u16::from_be_bytes([sent[6] ^ sent[2], sent[7] ^ sent[3]]),
        1000
    );
}

/// A message in one frame whose bytes are all buffered is delivered in one step; short and
/// long payloads (unmasked in place, or while copied) arrive intact, text and binary.
#[test]
fn whole_one_frame_messages_arrive_intact() {
    for len in [0usize, 1, 5, 125, 126, 511, 512, 513, 4000, 70_000] {
        let text: String = "κόσμε-".chars().cycle().take(len).collect();
        for (first, payload) in [(0x81, text.as_bytes().to_vec()), (0x82, common_bytes(len))] {
            let mut input = masked(first, &payload);
            input.extend(masked(0x88, &close_payload(1000, b"")));
            let out = read_once(Role::Server, &input, |_| {});
            assert_eq!(out.result, Ok(()), "length {len}");
            assert_eq!(out.message, payload, "length {len}");
            assert!(out.sent.is_empty());
        }
    }
}

fn common_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

/// 6.3.1: invalid UTF-8 in a text message that arrived whole in one frame fails it with
/// 1007, and none of its bytes are left in the buffer (short and long payloads).
#[test]
fn invalid_utf8_in_a_whole_one_frame_message_is_1007_and_leaves_nothing() {
    for len in [4usize, 100, 600, 5000] {
        let mut payload = vec![b'a'; len];
        payload[len / 2] = 0xC0; // never valid
        let buf = FlatBuffer::new();
        buf.extend_from_slice(b"kept").unwrap();
        let out = read_once_into(buf, Role::Server, &masked(0x81, &payload), |_| {});
        assert_eq!(out.result, Err(Error::BadFramePayload), "length {len}");
        assert_eq!(close_code_sent(&out.sent), Some(1007));
        assert_eq!(
            out.message, b"kept",
            "what was in the buffer stays, nothing more"
        );
    }
}

/// A message in one frame that would grow the buffer past its bound fails the stream with
/// `BufferOverflow` and no close frame (Beast), whether short or long.
#[test]
fn a_whole_one_frame_message_past_the_buffer_bound_overflows() {
    for len in [20usize, 700] {
        let buf = FlatBuffer::with_max_size(len - 1);
        let out = read_once_into(buf, Role::Server, &masked(0x82, &vec![1; len]), |_| {});
        assert_eq!(out.result, Err(Error::BufferOverflow), "length {len}");
        assert!(out.sent.is_empty(), "no close frame");
        assert!(out.message.is_empty());
    }
}

/// What a read started after `first` got: the outcome of reading `first`, then `second`,
/// both of which arrived in one transport read (so the second is already buffered in the
/// stream when its read starts), and the bytes the stream sent.
struct BufferedOutcome {
    first: Result<(), Error>,
    second: Option<(Result<(), Error>, usize)>,
    message: Vec<u8>,
    sent: Vec<u8>,
    started_inline: bool,
}

fn read_buffered_second(buf: FlatBuffer, first: &[u8], second: &[u8]) -> BufferedOutcome {
    let ctx = IoContext::new().unwrap();
    let ws = lone(&ctx, Role::Server);
    ws.next_layer().append(&[first, second].concat());
    ws.next_layer().close_remote();
    let got = Rc::new(RefCell::new((None, None, false)));
    let (g, w, b) = (got.clone(), ws.clone(), buf.clone());
    ws.async_read(&FlatBuffer::new(), move |r, _| {
        g.borrow_mut().0 = Some(r);
        let returned = Rc::new(RefCell::new(false));
        let (g2, ret) = (g.clone(), returned.clone());
        w.async_read(&b, move |r, n| {
            let mut got = g2.borrow_mut();
            got.1 = Some((r, n));
            // The handler runs from the loop, never inside `async_read`.
            got.2 = !*ret.borrow();
        });
        *returned.borrow_mut() = true;
    });
    ctx.run();
    let (first, second, started_inline) = got.borrow_mut().clone();
    let sent = ws.next_layer().take_output().to_vec();
    BufferedOutcome {
        first: first.expect("the first read completed"),
        second,
        message: buf.data().to_vec(),
        sent,
        started_inline,
    }
}

/// A read that starts with a whole one-frame message already buffered (it arrived with
/// the one before) takes it at once: short and long payloads, text and binary, arrive
/// intact, and the handler still runs from the loop.
#[test]
fn a_whole_message_buffered_when_its_read_starts_arrives_intact() {
    for len in [0usize, 1, 5, 125, 126, 511, 512, 513, 4000, 70_000] {
        let text: String = "κόσμε-".chars().cycle().take(len).collect();
        for (first, payload) in [(0x81, text.as_bytes().to_vec()), (0x82, common_bytes(len))] {
            let out = read_buffered_second(
                FlatBuffer::new(),
                &masked(0x82, b"before"),
                &masked(first, &payload),
            );
            assert_eq!(out.first, Ok(()));
            assert_eq!(out.second, Some((Ok(()), payload.len())), "length {len}");
            assert_eq!(out.message, payload, "length {len}");
            assert!(out.sent.is_empty());
            assert!(!out.started_inline, "posted, not run inside async_read");
        }
    }
}

/// Invalid UTF-8 in a whole text message buffered when its read starts: 1007, the read
/// fails with `BadFramePayload`, and none of its bytes are left in the buffer.
#[test]
fn invalid_utf8_in_a_buffered_whole_message_is_1007_and_leaves_nothing() {
    for len in [4usize, 100, 600, 5000] {
        let mut payload = vec![b'a'; len];
        payload[len / 2] = 0xC0; // never valid
        let buf = FlatBuffer::new();
        buf.extend_from_slice(b"kept").unwrap();
        let out = read_buffered_second(buf, &masked(0x81, b"ok"), &masked(0x81, &payload));
        assert_eq!(out.first, Ok(()));
        assert_eq!(
            out.second,
            Some((Err(Error::BadFramePayload), 0)),
            "length {len}"
        );
        assert_eq!(close_code_sent(&out.sent), Some(1007));
        assert_eq!(
            out.message, b"kept",
            "what was in the buffer stays, nothing more"
        );
    }
}

/// A buffered whole message that would grow the buffer past its bound fails the stream
/// with `BufferOverflow` and no close frame, as when it arrives with its read in progress.
#[test]
fn a_buffered_whole_message_past_the_buffer_bound_overflows() {
    for len in [20usize, 700] {
        let buf = FlatBuffer::with_max_size(len - 1);
        let out = read_buffered_second(buf, &masked(0x82, b"ok"), &masked(0x82, &vec![1; len]));
        assert_eq!(out.first, Ok(()));
        assert_eq!(
            out.second,
            Some((Err(Error::BufferOverflow), 0)),
            "length {len}"
        );
        assert!(out.sent.is_empty(), "no close frame");
        assert!(out.message.is_empty());
    }
}

/// A ping buffered between two messages is answered before the second message's read
/// completes, and the message still arrives whole.
#[test]
fn a_ping_buffered_before_a_whole_message_is_answered_first() {
    let second = [masked(0x89, b"p"), masked(0x82, b"data")].concat();
    let out = read_buffered_second(FlatBuffer::new(), &masked(0x82, b"ok"), &second);
    assert_eq!(out.second, Some((Ok(()), 4)));
    assert_eq!(out.message, b"data");
    assert_eq!(out.sent, unmasked(0x8A, b"p"), "the pong");
}

/// `async_read_some` with a limit below the frame's length takes a buffered whole frame in
/// pieces, and the message is done only after the last one.
#[test]
fn read_some_takes_a_buffered_whole_frame_in_pieces() {
    let ctx = IoContext::new().unwrap();
    let ws = lone(&ctx, Role::Server);
    ws.next_layer().append(&masked(0x81, b"0123456789"));
    let buf = FlatBuffer::new();
    let sizes = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..3 {
        let (s, w) = (sizes.clone(), ws.clone());
        ws.async_read_some(&buf, 4, move |r, n| {
            s.borrow_mut().push((r, n, w.is_message_done()));
        });
        ctx.run();
    }
    assert_eq!(
        *sizes.borrow(),
        vec![(Ok(()), 4, false), (Ok(()), 4, false), (Ok(()), 2, true)]
    );
    assert_eq!(&*buf.data(), b"0123456789");
}
