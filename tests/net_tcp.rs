//! Real-socket tests of the reactor on 127.0.0.1.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use rbeast::net::{FlatBuffer, IoContext, SteadyTimer, TcpAcceptor, TcpStream};
use rbeast::test::fail_handler;
use rbeast::Error;

mod common;
use common::Captured;

fn listen(ctx: &IoContext) -> TcpAcceptor {
    TcpAcceptor::bind(ctx, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Deterministic payload: byte i of connection c.
fn pattern(conn: usize, len: usize) -> Bytes {
    (0..len)
        .map(|i| ((i * 31 + conn * 7) % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn server_echo(sock: TcpStream, buf: FlatBuffer) {
    let (s, b) = (sock.clone(), buf.clone());
    sock.async_read_some(&buf, move |r, _| {
        if r.is_err() {
            return;
        }
        let data = b.take();
        let s2 = s.clone();
        s.async_write(data, move |r, _| {
            if r.is_ok() {
                server_echo(s2, b)
            }
        });
    });
}

fn accept_n(acceptor: TcpAcceptor, n: usize) {
    if n == 0 {
        return;
    }
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        server_echo(r.unwrap(), FlatBuffer::new());
        accept_n(a, n - 1);
    });
}

#[test]
fn echo_of_100_mb_over_several_connections_arrives_intact() {
    const CONNS: usize = 4;
    const PER_CONN: usize = 25 * 1024 * 1024;
    let ctx = IoContext::new().unwrap();
    let acceptor = listen(&ctx);
    let addr = acceptor.local_addr().unwrap();
    accept_n(acceptor, CONNS);
    let verified = Rc::new(Cell::new(0usize));
    for c in 0..CONNS {
        let sock = TcpStream::new(&ctx);
        let s = sock.clone();
        let verified = verified.clone();
        sock.async_connect(addr, move |r| {
            r.unwrap();
            let payload = pattern(c, PER_CONN);
            let keep = s.clone();
            s.async_write(payload.clone(), move |r, n| {
                let _keep_open_until_done = keep;
                r.unwrap();
                assert_eq!(n, PER_CONN);
            });
            let buf = FlatBuffer::new();
            let b = buf.clone();
            let keep = s.clone();
            s.async_read(&buf, PER_CONN, move |r, n| {
                drop(keep);
                r.unwrap();
                assert_eq!(n, PER_CONN);
                assert!(*b.data() == payload[..], "connection {c} corrupted");
                verified.set(verified.get() + 1);
            });
        });
    }
    ctx.run();
    assert_eq!(verified.get(), CONNS);
}

#[test]
fn partial_writes_under_a_small_send_buffer_complete() {
    const LEN: usize = 4 * 1024 * 1024;
    let ctx = IoContext::new().unwrap();
    let acceptor = listen(&ctx);
    let addr = acceptor.local_addr().unwrap();
    let received = FlatBuffer::new();
    let delay = Rc::new(SteadyTimer::new(&ctx));
    {
        let (received, delay) = (received.clone(), delay.clone());
        acceptor.async_accept(move |r| {
            let sock = r.unwrap();
            // Read only later, so that the writer meets a full socket first.
            delay.expires_after(Duration::from_millis(50));
            delay.async_wait(move |_| {
                let keep = sock.clone();
                sock.async_read(&received, LEN, move |r, n| {
                    drop(keep);
                    r.unwrap();
                    assert_eq!(n, LEN);
                });
            });
        });
    }
    let sock = TcpStream::new(&ctx);
    let s = sock.clone();
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    sock.async_connect(addr, move |r| {
        r.unwrap();
        s.set_send_buffer_size(4096).unwrap();
        let keep = s.clone();
        s.async_write(pattern(0, LEN), move |r, n| {
            drop(keep);
            r.unwrap();
            assert_eq!(n, LEN);
            d.set(true);
        });
    });
    ctx.run();
    assert!(done.get());
    assert!(*received.data() == pattern(0, LEN)[..]);
}

#[test]
fn connect_to_a_closed_port_reports_connection_refused() {
    let ctx = IoContext::new().unwrap();
    let addr = {
        let a = listen(&ctx);
        let addr = a.local_addr().unwrap();
        a.close();
        addr
    };
    let sock = TcpStream::new(&ctx);
    let got = Captured::new();
    sock.async_connect(addr, got.wait_handler());
    ctx.run();
    let r = got.take().expect("handler ran");
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.is_io(std::io::ErrorKind::ConnectionRefused)),
        "{r:?}"
    );
    assert!(!sock.is_open());
}

#[test]
fn connect_any_tries_each_address_in_turn() {
    let ctx = IoContext::new().unwrap();
    let live = listen(&ctx);
    let dead = {
        let a = listen(&ctx);
        let addr = a.local_addr().unwrap();
        a.close();
        addr
    };
    let live_addr = live.local_addr().unwrap();
    live.async_accept(|r| drop(r.unwrap()));
    let sock = TcpStream::new(&ctx);
    let got = Rc::new(Cell::new(None));
    let g = got.clone();
    sock.async_connect_any(vec![dead, live_addr], move |r| g.set(Some(r.unwrap())));
    ctx.run();
    assert_eq!(got.get(), Some(live_addr));
}

/// Connects a client to a fresh acceptor; returns (client, server).
fn connected_pair(ctx: &IoContext) -> (TcpStream, TcpStream) {
    let acceptor = listen(ctx);
    let addr = acceptor.local_addr().unwrap();
    let server = Rc::new(RefCell::new(None));
    let s = server.clone();
    acceptor.async_accept(move |r| *s.borrow_mut() = Some(r.unwrap()));
    let client = TcpStream::new(ctx);
    client.async_connect(addr, |r| r.unwrap());
    ctx.run();
    let server = server.borrow_mut().take().unwrap();
    (client, server)
}

#[test]
fn a_second_read_gets_already_started_and_the_first_keeps_working() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = connected_pair(&ctx);
    let buf = FlatBuffer::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let o = order.clone();
    server.async_read(&buf, 5, move |r, n| {
        assert_eq!((r, n), (Ok(()), 5));
        o.borrow_mut().push("first");
    });
    let o = order.clone();
    server.async_read_some(&FlatBuffer::new(), move |r, _| {
        assert_eq!(r, Err(Error::AlreadyStarted));
        o.borrow_mut().push("second");
    });
    client.async_write(&b"hello"[..], |r, _| r.unwrap());
    ctx.run();
    assert_eq!(*order.borrow(), vec!["second", "first"]);
    assert_eq!(&*buf.data(), b"hello");
}

#[test]
fn cancel_and_close_abort_pending_operations() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = connected_pair(&ctx);
    server.async_read_some(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    server.cancel();
    ctx.run();
    assert!(server.is_open(), "cancel leaves the socket open");
    server.async_read_some(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    server.close();
    ctx.run();
    server.async_write(&b"x"[..], fail_handler(Error::OperationAborted));
    ctx.run();
    drop(client);
}

#[test]
fn handlers_never_run_inside_the_initiating_call() {
    let ctx = IoContext::new().unwrap();
    let closed = TcpStream::new(&ctx);
    let ran = Rc::new(Cell::new(0));
    let r1 = ran.clone();
    closed.async_read_some(&FlatBuffer::new(), move |r, _| {
        assert_eq!(r, Err(Error::OperationAborted));
        r1.set(r1.get() + 1);
    });
    let r2 = ran.clone();
    closed.async_write(&b"x"[..], move |_, _| r2.set(r2.get() + 1));
    assert_eq!(ran.get(), 0);
    ctx.run();
    assert_eq!(ran.get(), 2);
    // Data already waiting: the read completes at once, but still from the run loop.
    let (client, server) = connected_pair(&ctx);
    client.async_write(&b"ready"[..], |r, _| r.unwrap());
    ctx.run();
    let r3 = ran.clone();
    server.async_read_some(&FlatBuffer::new(), move |r, n| {
        assert_eq!((r, n), (Ok(()), 5));
        r3.set(r3.get() + 1);
    });
    assert_eq!(ran.get(), 2);
    ctx.run();
    assert_eq!(ran.get(), 3);
}

#[test]
fn peer_close_is_eof() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = connected_pair(&ctx);
    client.async_write(&b"last words"[..], |r, _| r.unwrap());
    ctx.run();
    client.close();
    let buf = FlatBuffer::new();
    let b = buf.clone();
    server.async_read(&buf, 100, move |r, n| {
        assert_eq!(r, Err(Error::Eof));
        assert_eq!(n, 10);
        assert_eq!(&*b.data(), b"last words");
    });
    ctx.run();
}

#[test]
fn accept_cancel_close_and_second_accept() {
    let ctx = IoContext::new().unwrap();
    let a = listen(&ctx);
    a.async_accept(|r| assert_eq!(r.err(), Some(Error::OperationAborted)));
    a.async_accept(|r| assert_eq!(r.err(), Some(Error::AlreadyStarted)));
    a.cancel();
    ctx.run();
    a.close();
    a.async_accept(|r| assert_eq!(r.err(), Some(Error::OperationAborted)));
    assert_eq!(ctx.run(), 1);
}

#[test]
fn reuse_port_lets_two_listeners_share_a_port() {
    use rbeast::net::AcceptorOptions;
    let ctx = IoContext::new().unwrap();
    let opts = AcceptorOptions {
        reuse_port: true,
        ..Default::default()
    };
    let a = TcpAcceptor::bind_with(&ctx, "127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let b = TcpAcceptor::bind_with(&ctx, a.local_addr().unwrap(), opts).unwrap();
    assert_eq!(a.local_addr().unwrap(), b.local_addr().unwrap());
}

#[test]
fn dropping_the_last_handle_aborts_pending_operations() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = connected_pair(&ctx);
    server.async_read_some(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    drop(server);
    ctx.run();
    // The client sees the connection end.
    client.async_read_some(&FlatBuffer::new(), fail_handler(Error::Eof));
    let keep = client.clone();
    ctx.run();
    drop(keep);
    let a = listen(&ctx);
    a.async_accept(|r| assert_eq!(r.err(), Some(Error::OperationAborted)));
    drop(a);
    assert_eq!(ctx.run(), 1);
}
