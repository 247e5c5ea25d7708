//! WriteQueue: many messages in order, coalesced into few writes, bounded, with errors.

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream, Transport};
use rbeast::proto::close::CloseCode;
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::test;
use rbeast::websocket::{Stream, WriteQueue};
use rbeast::{Error, Role};

mod common;
use common::{open_pair, parse_frames};

type Ws = Stream<test::Stream>;
/// Messages read, with their binary flag.
type Received = Rc<RefCell<Vec<(Vec<u8>, bool)>>>;

/// Reads `n` messages; returns them with their binary flag.
fn read_all<T: Transport>(ws: &Stream<T>, ctx: &IoContext, n: usize) -> Vec<(Vec<u8>, bool)> {
    let got: Received = Rc::new(RefCell::new(Vec::new()));
    fn next<T: Transport>(ws: Stream<T>, got: Received, left: usize) {
        if left == 0 {
            return;
        }
        let (w, buf) = (ws.clone(), FlatBuffer::new());
        let b = buf.clone();
        ws.async_read(&buf, move |r, _| {
            r.unwrap();
            got.borrow_mut().push((b.take().to_vec(), w.got_binary()));
            next(w, got, left - 1);
        });
    }
    next(ws.clone(), got.clone(), n);
    ctx.run();
    let v = got.borrow().clone();
    v
}

#[test]
fn queued_messages_arrive_in_order_and_leave_in_one_write() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = open_pair(&ctx);
    let queue = WriteQueue::new(&server, 1 << 20);
    let done = Rc::new(RefCell::new(Vec::new()));
    for i in 0..100usize {
        let d = done.clone();
        let binary = i % 3 == 0;
        queue.send(format!("message {i}"), binary, move |r, n| {
            assert_eq!(r, Ok(()));
            assert_eq!(n, format!("message {i}").len());
            d.borrow_mut().push(i);
        });
    }
    let got = read_all(&client, &ctx, 100);
    for (i, (data, binary)) in got.iter().enumerate() {
        assert_eq!(data, format!("message {i}").as_bytes());
        assert_eq!(*binary, i % 3 == 0);
    }
    assert_eq!(*done.borrow(), (0..100).collect::<Vec<_>>());
    assert_eq!(
        server.next_layer().nwrite(),
        1,
        "all hundred frames in one write"
    );
}

#[test]
fn a_queued_message_takes_the_stream_settings_as_it_is_handed_over() {
    let ctx = IoContext::new().unwrap();
    let ws = Stream::new(test::Stream::new(&ctx));
    ws.open_unchecked(Role::Server);
    // A transport that takes 1000 bytes until they are taken out, as a slow peer.
    ws.next_layer().write_capacity(1000);
    let queue = WriteQueue::new(&ws, 1 << 20);
    // The first message fills the output: the second is handed to the stream at once, as a
    // write waiting for room, and the third stays in the queue until that write is done.
    queue.send(vec![b'a'; 300_000], true, |r, _| r.unwrap());
    queue.send(vec![b'b'; 3000], true, |r, _| r.unwrap());
    queue.send(vec![b'c'; 3000], true, |r, _| r.unwrap());
    assert_eq!(queue.len(), 1, "the third message is in the queue");
    ws.set_write_buffer_bytes(1000).unwrap();
    let mut out = Vec::new();
    loop {
        let ran = ctx.poll();
        let more = ws.next_layer().take_output();
        if ran == 0 && more.is_empty() {
            break;
        }
        out.extend_from_slice(&more);
    }
    let sizes: Vec<usize> = parse_frames(&out).iter().map(|f| f.payload.len()).collect();
    let (first, rest) = sizes.split_at(sizes.len() - 4);
    assert_eq!(first.iter().sum::<usize>(), 300_000);
    assert!(
        first[..first.len() - 1].iter().all(|&n| n == 4096),
        "{first:?}"
    );
    assert_eq!(
        rest,
        [3000, 1000, 1000, 1000],
        "frames of 4096 bytes, then of 1000"
    );
}

/// A connected loopback TCP pair of open streams. Loopback sockets buffer a few MiB at
/// most, so 32 MiB sent to a client that does not read fill them.
fn tcp_pair(ctx: &IoContext) -> (Stream<TcpStream>, Stream<TcpStream>) {
    let acceptor = TcpAcceptor::bind(ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let accepted = Rc::new(RefCell::new(None));
    let a = accepted.clone();
    acceptor.async_accept(move |r| *a.borrow_mut() = Some(r.unwrap()));
    let sock = TcpStream::new(ctx);
    sock.async_connect(addr, |r| r.unwrap());
    ctx.run();
    let server_sock = accepted.borrow_mut().take().unwrap();
    server_sock.set_nodelay(true).unwrap();
    let (client, server) = (Stream::new(sock), Stream::new(server_sock));
    client.open_unchecked(Role::Client);
    server.open_unchecked(Role::Server);
    (client, server)
}

#[test]
fn the_bound_is_enforced_and_frees_up_as_messages_leave() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    client.set_read_message_max(64 << 20);
    const BOUND: usize = 40 << 20;
    let queue = WriteQueue::new(&server, BOUND);
    // 32 MiB framed at once fill the socket and leaves the output past its high-water
    // mark; the next message goes through a regular write that waits for room, and what
    // follows waits in the queue, counted against the bound.
    queue.send(vec![1u8; 32 << 20], true, |r, _| assert_eq!(r, Ok(())));
    queue.send("handed over", false, |r, _| assert_eq!(r, Ok(())));
    for _ in 0..5 {
        queue.send(vec![2u8; 20_000], true, |r, _| assert_eq!(r, Ok(())));
    }
    assert_eq!(queue.queued_bytes(), 100_000);
    assert_eq!(queue.len(), 5);
    let full = Rc::new(RefCell::new(Vec::new()));
    let f = full.clone();
    queue.send(vec![3u8; BOUND - 100_000 + 1], true, move |r, _| {
        f.borrow_mut().push(r)
    });
    ctx.poll();
    assert_eq!(*full.borrow(), vec![Err(Error::WriteQueueFull)]);
    // The client reads: everything arrives in order and the queue drains.
    let got: Vec<Vec<u8>> = read_all(&client, &ctx, 7)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(got[0].len(), 32 << 20);
    assert_eq!(got[1], b"handed over");
    assert!(got[2..].iter().all(|m| m.len() == 20_000));
    assert_eq!(queue.queued_bytes(), 0);
}

#[test]
fn large_and_compressed_messages_keep_their_order() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = test::Stream::pair(&ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    let on = |ws: &Ws, client: bool| {
        ws.set_permessage_deflate(PermessageDeflate {
            client_enable: client,
            server_enable: !client,
            msg_size_threshold: 1000,
            ..PermessageDeflate::default()
        })
        .unwrap()
    };
    on(&client, true);
    on(&server, false);
    server.async_accept(|r| r.unwrap());
    client.async_handshake("h", "/", |r| r.unwrap());
    ctx.run();
    assert!(server.permessage_deflate_status().active);
    let queue = WriteQueue::new(&server, 16 << 20);
    let sizes = [10usize, 5000, 20, 200_000, 30, 1 << 20, 1];
    for (i, &len) in sizes.iter().enumerate() {
        queue.send(vec![i as u8; len], true, move |r, n| {
            assert_eq!(r, Ok(()));
            assert_eq!(n, len);
        });
    }
    let got = read_all(&client, &ctx, sizes.len());
    for (i, (data, _)) in got.iter().enumerate() {
        assert_eq!(data.len(), sizes[i]);
        assert!(data.iter().all(|&b| b == i as u8));
    }
}

#[test]
fn after_a_close_every_queued_message_is_aborted() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = open_pair(&ctx);
    client.async_read(&FlatBuffer::new(), |r, _| assert_eq!(r, Err(Error::Closed)));
    server.async_close(CloseCode::NORMAL, |r| assert_eq!(r, Ok(())));
    let queue = WriteQueue::new(&server, 1024);
    let results = Rc::new(RefCell::new(Vec::new()));
    for _ in 0..3 {
        let r = results.clone();
        queue.send("late", false, move |e, _| r.borrow_mut().push(e));
    }
    ctx.run();
    assert_eq!(*results.borrow(), vec![Err(Error::OperationAborted); 3]);
}

#[test]
fn a_pong_goes_out_between_the_frames_of_a_long_message() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = tcp_pair(&ctx);
    client.set_read_message_max(64 << 20);
    // The server sends 32 MiB in 4 KiB frames, more than the sockets buffer, and reads.
    server.async_read(&FlatBuffer::new(), |_, _| {});
    server.set_binary(true);
    server.async_write(bytes::Bytes::from(vec![5u8; 32 << 20]), |r, _| {
        assert_eq!(r, Ok(()))
    });
    ctx.poll();
    // The client pings, then reads the long message.
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    client.set_control_callback(move |kind, _| o.borrow_mut().push(format!("{kind:?}")));
    client.async_ping(b"p", |r| assert_eq!(r, Ok(())));
    let (o, buf) = (order.clone(), FlatBuffer::new());
    let b = buf.clone();
    let keep = (client.clone(), server.clone());
    let handle = ctx.handle().clone();
    client.async_read(&buf, move |r, n| {
        let _ = &keep;
        assert_eq!(r, Ok(()));
        assert_eq!(n, 32 << 20);
        assert!(b.data().iter().all(|&x| x == 5));
        o.borrow_mut().push("message".to_string());
        // The server's read stays pending: stop here.
        handle.stop();
    });
    ctx.run();
    assert_eq!(
        *order.borrow(),
        vec!["Pong".to_string(), "message".to_string()]
    );
}
