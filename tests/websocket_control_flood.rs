//! A peer flooding control frames meets backpressure: the stream stops parsing while its
//! pongs cannot leave, and while the control callbacks it queued have not run yet. Every
//! ping is still answered and observed, in order, once the flood can be taken in.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::test;
use rbeast::websocket::{FrameType, Stream};
use rbeast::Role;

mod common;
use common::{masked, Captured};

#[test]
fn queued_control_callbacks_hold_parsing_back_until_they_run() {
    const PINGS: u32 = 20_000;
    let ctx = IoContext::new().unwrap();
    let ws = Stream::new(test::Stream::new(&ctx));
    ws.open_unchecked(Role::Server);
    let mut input = Vec::new();
    for i in 0..PINGS {
        input.extend(masked(0x89, &i.to_be_bytes()));
    }
    input.extend(masked(0x81, b"end"));
    let transport = ws.next_layer().clone();
    // One frame per read: the bytes read tell how many frames were parsed.
    transport.read_size(10);
    transport.append(&input);
    let calls = Rc::new(Cell::new(0u32));
    let most_waiting = Rc::new(Cell::new(0usize));
    let (c, w, t) = (calls.clone(), most_waiting.clone(), transport.clone());
    ws.set_control_callback(move |kind, payload| {
        let i = c.get();
        assert_eq!(kind, FrameType::Ping);
        assert_eq!(
            payload,
            &i.to_be_bytes(),
            "callbacks run in the frames' order"
        );
        // Pings parsed (bytes read, one frame per read) whose callback has not run yet.
        let waiting = t.nread_bytes() / 10 - i as usize;
        w.set(w.get().max(waiting));
        c.set(i + 1);
    });
    let buf = FlatBuffer::new();
    let (b, c) = (buf.clone(), calls.clone());
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    ws.async_read(&buf, move |r, n| {
        assert_eq!((r, n), (Ok(()), 3));
        assert_eq!(&*b.data(), b"end");
        assert_eq!(
            c.get(),
            PINGS,
            "every callback ran before the read completed"
        );
        d.set(true);
    });
    ctx.run();
    assert!(done.get());
    // 16 calls queued, and the ping read after them that waits unparsed.
    assert!(
        most_waiting.get() <= 17,
        "{} control callbacks were queued at once",
        most_waiting.get()
    );
    let output = transport.take_output();
    assert_eq!(output.len(), PINGS as usize * 6, "a pong for every ping");
    for (i, pong) in output.chunks(6).enumerate() {
        assert_eq!(pong[..2], [0x8A, 4]);
        assert_eq!(pong[2..], (i as u32).to_be_bytes());
    }
}

#[test]
fn pings_from_a_peer_that_does_not_read_its_pongs_stop_being_read() {
    // Past this, the stream is reading pings whose pongs can go nowhere.
    const LIMIT: usize = 16 << 20;
    let ctx = IoContext::new().unwrap();
    let (mut peer, ws) = raw_peer_and_server(&ctx);
    let read_result = Captured::new();
    let buf = FlatBuffer::new();
    ws.async_read(&buf, read_result.io_handler());

    let ping = masked(0x89, &[7u8; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 500)
        .collect();
    let (mut sent, mut at, mut stalled) = (0usize, 0usize, 0);
    while sent < LIMIT && stalled < 200 {
        match peer.write(&batch[at..]) {
            Ok(n) => {
                sent += n;
                at = (at + n) % batch.len();
                stalled = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                ctx.poll();
                stalled += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        sent < LIMIT,
        "the stream kept reading pings while its pongs could not leave"
    );
    // The peer finishes its last frame and reads: every ping gets its pong.
    let mut pongs = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    while sent % ping.len() != 0 || pongs.len() < sent / ping.len() * 127 {
        if sent % ping.len() != 0 {
            let end = at + (ping.len() - sent % ping.len());
            if let Ok(n) = peer.write(&batch[at..end]) {
                sent += n;
                at = (at + n) % batch.len();
            }
        }
        match peer.read(&mut chunk) {
            Ok(0) => panic!("the stream closed the connection"),
            Ok(n) => pongs.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                ctx.poll();
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(pongs.len(), sent / ping.len() * 127);
    for pong in pongs.chunks(127) {
        assert_eq!(pong[..2], [0x8A, 125]);
        assert!(pong[2..].iter().all(|&b| b == 7));
    }
    assert!(!read_result.is_set(), "the read still waits for data");
}

#[test]
fn a_long_write_to_a_slow_reader_does_not_hold_a_pong_back() {
    const MESSAGE: usize = 32 << 20;
    let ctx = IoContext::new().unwrap();
    let (mut peer, ws) = raw_peer_and_server(&ctx);
    ws.async_read(&FlatBuffer::new(), |_, _| {});
    ws.set_binary(true);
    ws.async_write(bytes::Bytes::from(vec![5u8; MESSAGE]), |r, _| {
        assert_eq!(r, Ok(()))
    });
    // The write fills the sockets and keeps the output at its high-water mark.
    ctx.poll();
    peer.write_all(&masked(0x89, b"p")).unwrap();
    // The peer reads a little at a time, as a slow reader does, and parses the frames.
    let (mut pending, mut chunk) = (Vec::new(), vec![0u8; 4096]);
    let (mut data_before_pong, mut pong, mut last) = (0usize, false, false);
    while !last {
        match peer.read(&mut chunk) {
            Ok(0) => panic!("the stream closed the connection"),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        ctx.poll();
        while let Some((first, payload, len)) = server_frame(&pending) {
            match first & 0x0f {
                0xA => {
                    assert_eq!(payload, b"p");
                    pong = true;
                }
                _ if !pong => data_before_pong += payload.len(),
                _ => {}
            }
            last |= first & 0x8f == 0x80 || first == 0x82;
            pending.drain(..len);
        }
    }
    assert!(pong, "no pong before the message ended");
    assert!(
        data_before_pong < 8 << 20,
        "{data_before_pong} bytes of the message went out before the pong"
    );
}

/// A raw loopback peer (nonblocking) and an open server stream, with small fixed socket
/// buffers (no autotuning), so that what the kernel holds is known.
fn raw_peer_and_server(ctx: &IoContext) -> (std::net::TcpStream, Stream<TcpStream>) {
    const BUFFER: usize = 256 << 10;
    let acceptor = TcpAcceptor::bind(ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let peer = std::net::TcpStream::connect(acceptor.local_addr().unwrap()).unwrap();
    let sock = socket2::SockRef::from(&peer);
    sock.set_recv_buffer_size(BUFFER).unwrap();
    sock.set_send_buffer_size(BUFFER).unwrap();
    peer.set_nonblocking(true).unwrap();
    let accepted = Rc::new(RefCell::new(None));
    let a = accepted.clone();
    acceptor.async_accept(move |r| *a.borrow_mut() = Some(r.unwrap()));
    ctx.run();
    let tcp = accepted.borrow_mut().take().unwrap();
    tcp.set_recv_buffer_size(BUFFER).unwrap();
    tcp.set_send_buffer_size(BUFFER).unwrap();
    let ws = Stream::new(tcp);
    ws.open_unchecked(Role::Server);
    (peer, ws)
}

/// The first unmasked frame in `bytes`: its first byte, its payload and its whole length.
fn server_frame(bytes: &[u8]) -> Option<(u8, &[u8], usize)> {
    let (&first, rest) = bytes.split_first()?;
    let (&len7, rest) = rest.split_first()?;
    let (len, header) = match len7 {
        126 => (
            u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(rest.get(..8)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = bytes.get(header..header + len)?;
    Some((first, payload, header + len))
}
