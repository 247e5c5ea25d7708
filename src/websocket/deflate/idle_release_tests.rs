//! Streams freeing their zlib states while idle (`PermessageDeflate::idle_release`).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use crate::net::{FlatBuffer, IoContext};
use crate::proto::deflate::PermessageDeflate;
use crate::websocket::Stream;

type Ws = Stream<crate::test::Stream>;

/// A pair with context takeover both ways, each freeing idle states after `release`.
fn pair(ctx: &IoContext, release: Option<Duration>) -> (Ws, Ws) {
    let (a, b) = crate::test::Stream::pair(ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    let pmd = PermessageDeflate {
        client_enable: true,
        server_enable: true,
        idle_release: release,
        ..Default::default()
    };
    client.set_permessage_deflate(pmd).unwrap();
    server.set_permessage_deflate(pmd).unwrap();
    server.async_accept(|r| r.unwrap());
    client.async_handshake("h", "/", |r| r.unwrap());
    ctx.run();
    assert!(client.is_open() && server.is_open());
    (client, server)
}

fn text(len: usize, seed: u8) -> Vec<u8> {
    let words: [&[u8]; 4] = [b"{\"id\": ", b"\"rbeast\", ", b"[1, 2, 3], ", b"null} "];
    let mut v = Vec::new();
    let mut k = usize::from(seed);
    while v.len() < len {
        v.extend_from_slice(words[k % 4]);
        v.push(b'a' + (k % 26) as u8);
        k = k.wrapping_mul(7).wrapping_add(3);
    }
    v.truncate(len);
    v
}

/// Sends `msg` from `from` to `to` and returns the bytes it took on the wire.
fn send(ctx: &IoContext, from: &Ws, to: &Ws, msg: &[u8]) -> usize {
    let before = from.next_layer().nwrite_bytes();
    let len = msg.len();
    from.async_write(bytes::Bytes::copy_from_slice(msg), move |r, n| {
        assert_eq!((r, n), (Ok(()), len))
    });
    let buf = FlatBuffer::new();
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    to.async_read(&buf, move |r, n| {
        assert_eq!((r, n), (Ok(()), len));
        d.set(true);
    });
    ctx.poll();
    assert!(done.get() && *buf.data() == *msg);
    from.next_layer().nwrite_bytes() - before
}

/// Runs the context's timers for `duration`.
fn wait(ctx: &IoContext, duration: Duration) {
    let _work = ctx.executor().work_guard();
    ctx.run_for(duration);
}

#[test]
fn idle_streams_free_their_states_and_resume_with_their_window() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx, Some(Duration::from_millis(200)));
    let msg = text(3000, 1);
    let first = send(&ctx, &client, &server, &msg);
    send(&ctx, &server, &client, &msg);
    assert_eq!(client.zlib_states_held(), (true, true));
    assert_eq!(server.zlib_states_held(), (true, true));
    wait(&ctx, Duration::from_millis(400));
    assert_eq!(client.zlib_states_held(), (false, false));
    assert_eq!(server.zlib_states_held(), (false, false));
    // The same message again, both ways: it refers back to the first, and takes no more
    // room on the wire than with the states kept.
    let (kept_client, kept_server) = pair(&ctx, None);
    send(&ctx, &kept_client, &kept_server, &msg);
    send(&ctx, &kept_server, &kept_client, &msg);
    let kept_again = send(&ctx, &kept_client, &kept_server, &msg);
    let kept_back = send(&ctx, &kept_server, &kept_client, &msg);
    let again = send(&ctx, &client, &server, &msg);
    assert!(again * 5 < first, "{again} vs {first}");
    assert!(
        again <= kept_again + 4,
        "{again} vs {kept_again} with the states kept"
    );
    let back = send(&ctx, &server, &client, &msg);
    assert!(
        back <= kept_back + 4,
        "{back} vs {kept_back} with the states kept"
    );
    for k in 0..5 {
        send(&ctx, &client, &server, &text(20_000 + k * 9000, k as u8));
        send(&ctx, &server, &client, &text(40_000, 9 + k as u8));
        wait(&ctx, Duration::from_millis(5));
    }
}

#[test]
fn a_message_in_progress_keeps_its_state() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx, Some(Duration::ZERO));
    let msg = text(60_000, 2);
    client.async_write_some(
        false,
        bytes::Bytes::copy_from_slice(&msg[..30_000]),
        |r, _| r.unwrap(),
    );
    let part = FlatBuffer::with_max_size(1000);
    server.async_read_some(&part, 1000, |r, n| assert_eq!((r, n), (Ok(()), 1000)));
    ctx.poll();
    wait(&ctx, Duration::from_millis(20));
    assert_eq!(client.zlib_states_held(), (true, false));
    assert_eq!(server.zlib_states_held(), (false, true));
    client.async_write_some(
        true,
        bytes::Bytes::copy_from_slice(&msg[30_000..]),
        |r, _| r.unwrap(),
    );
    let rest = FlatBuffer::new();
    server.async_read(&rest, |r, n| assert_eq!((r, n), (Ok(()), 59_000)));
    ctx.poll();
    assert!(part.data()[..] == msg[..1000] && rest.data()[..] == msg[1000..]);
    wait(&ctx, Duration::from_millis(20));
    assert_eq!(client.zlib_states_held(), (false, false));
    assert_eq!(server.zlib_states_held(), (false, false));
}

#[test]
fn states_stay_while_messages_keep_coming() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx, Some(Duration::from_millis(300)));
    send(&ctx, &client, &server, &text(1000, 3));
    wait(&ctx, Duration::from_millis(150));
    // A message half way through the period: the timer fires at 300 ms and waits on.
    send(&ctx, &client, &server, &text(1000, 4));
    wait(&ctx, Duration::from_millis(200));
    assert_eq!(client.zlib_states_held(), (true, false));
    assert_eq!(server.zlib_states_held(), (false, true));
    wait(&ctx, Duration::from_millis(400));
    assert_eq!(client.zlib_states_held(), (false, false));
    assert_eq!(server.zlib_states_held(), (false, false));
}

#[test]
fn without_the_option_states_stay() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx, None);
    send(&ctx, &client, &server, &text(1000, 5));
    wait(&ctx, Duration::from_millis(20));
    assert_eq!(client.zlib_states_held(), (true, false));
    assert_eq!(server.zlib_states_held(), (false, true));
}
