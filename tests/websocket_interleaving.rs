//! Operations started back to back before the context runs (Beast's "suspend" tests): the
//! order and the result of every completion.

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::{FlatBuffer, IoContext, TcpStream, Transport};
use rbeast::proto::close::CloseCode;
use rbeast::test;
use rbeast::websocket::Stream;
use rbeast::{Error, Role};

mod common;

type Ws = Stream<test::Stream>;
type Log = Rc<RefCell<Vec<(&'static str, Result<(), Error>)>>>;

/// An open pair whose server reads until the connection closes.
fn open_pair(ctx: &IoContext) -> (Ws, Ws) {
    let (a, b) = test::Stream::pair(ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    client.open_unchecked(Role::Client);
    server.open_unchecked(Role::Server);
    fn drain(ws: Ws) {
        let w = ws.clone();
        ws.async_read(&FlatBuffer::new(), move |r, _| {
            if r.is_ok() {
                drain(w);
            }
        });
    }
    drain(server.clone());
    (client, server)
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Read,
    Write,
    Ping,
    Close,
}

fn start<T: Transport>(ws: &Stream<T>, op: Op, log: &Log) {
    let log = log.clone();
    match op {
        Op::Read => ws.async_read(&FlatBuffer::new(), move |r, _| {
            log.borrow_mut().push(("read", r))
        }),
        Op::Write => ws.async_write(&b"data"[..], move |r, _| {
            log.borrow_mut().push(("write", r))
        }),
        Op::Ping => ws.async_ping(b"", move |r| log.borrow_mut().push(("ping", r))),
        Op::Close => ws.async_close(CloseCode::NORMAL, move |r| {
            log.borrow_mut().push(("close", r))
        }),
    }
}

fn run(ops: &[Op]) -> Vec<(&'static str, Result<(), Error>)> {
    let ctx = IoContext::new().unwrap();
    let (client, _server) = open_pair(&ctx);
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    for &op in ops {
        start(&client, op, &log);
    }
    ctx.run();
    let v = log.borrow().clone();
    v
}

const OK: Result<(), Error> = Ok(());
const ABORTED: Result<(), Error> = Err(Error::OperationAborted);

#[test]
fn write_then_close() {
    assert_eq!(
        run(&[Op::Write, Op::Close]),
        vec![("write", OK), ("close", OK)]
    );
}

#[test]
fn ping_then_close() {
    assert_eq!(
        run(&[Op::Ping, Op::Close]),
        vec![("ping", OK), ("close", OK)]
    );
}

#[test]
fn close_then_write_and_ping_abort_at_once() {
    assert_eq!(
        run(&[Op::Close, Op::Write, Op::Ping]),
        vec![("write", ABORTED), ("ping", ABORTED), ("close", OK)]
    );
}

#[test]
fn read_then_close_aborts_the_read_after_the_close() {
    assert_eq!(
        run(&[Op::Read, Op::Close]),
        vec![("close", OK), ("read", ABORTED)]
    );
}

#[test]
fn close_then_read_aborts_the_read_after_the_close() {
    assert_eq!(
        run(&[Op::Close, Op::Read]),
        vec![("close", OK), ("read", ABORTED)]
    );
}

#[test]
fn four_way_permutations() {
    use Op::*;
    let ops = [Read, Write, Ping, Close];
    // Every order of the four operations.
    let mut permutations = Vec::new();
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let idx = [a, b, c, d];
                    let mut seen = [false; 4];
                    if idx.iter().all(|&i| !std::mem::replace(&mut seen[i], true)) {
                        permutations.push(idx.map(|i| ops[i]));
                    }
                }
            }
        }
    }
    assert_eq!(permutations.len(), 24);
    for order in permutations {
        let got = run(&order);
        let close_at = order.iter().position(|o| matches!(o, Close)).unwrap();
        let mut expected = Vec::new();
        // Writes and pings started before the close complete once queued, in order; those
        // started after it abort at once.
        for op in &order {
            match op {
                Write | Ping => {
                    let name = if matches!(op, Write) { "write" } else { "ping" };
                    let before = order.iter().position(|o| std::ptr::eq(o, op)).unwrap() < close_at;
                    expected.push((name, if before { OK } else { ABORTED }));
                }
                _ => {}
            }
        }
        // Then the close completes, and the read, which the close took over, aborts.
        expected.push(("close", OK));
        expected.push(("read", ABORTED));
        assert_eq!(got, expected, "order {order:?}");
    }
}

/// Starts writing a message far larger than the kernel's socket buffers while the peer
/// reads nothing, so that the write stays outstanding; checks that it did.
fn parked_write(ctx: &IoContext, client: &TcpWs, log: &Log) -> Vec<u8> {
    let message: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
    client.set_binary(true);
    let l = log.clone();
    client.async_write(bytes::Bytes::from(message.clone()), move |r, _| {
        l.borrow_mut().push(("write", r))
    });
    for _ in 0..10 {
        ctx.poll();
    }
    assert!(log.borrow().is_empty(), "the write is outstanding");
    message
}

type TcpWs = Stream<TcpStream>;

#[test]
fn close_started_during_a_parked_write_waits_for_it_and_aborts_later_pings() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = common::tcp_pair(&ctx);
    server.set_read_message_max(32 << 20);
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let message = parked_write(&ctx, &client, &log);
    let l = log.clone();
    client.async_close(CloseCode::NORMAL, move |r| {
        l.borrow_mut().push(("close", r))
    });
    start(&client, Op::Ping, &log);
    // The server reads the whole message, then sees the close.
    let received = Rc::new(RefCell::new(Vec::new()));
    let (buf, got, s) = (FlatBuffer::new(), received.clone(), server.clone());
    let l = log.clone();
    server.async_read(&buf.clone(), move |r, _| {
        got.borrow_mut().extend_from_slice(&buf.take());
        l.borrow_mut().push(("server read", r));
        s.async_read(&FlatBuffer::new(), move |r, _| {
            l.borrow_mut().push(("server read", r))
        });
    });
    ctx.run();
    assert_eq!(
        *log.borrow(),
        vec![
            ("ping", ABORTED),
            ("write", OK),
            ("server read", OK),
            ("close", OK),
            ("server read", Err(Error::Closed)),
        ]
    );
    assert!(*received.borrow() == message, "the message arrived whole");
}

#[test]
fn peer_close_during_a_parked_write_aborts_it_and_the_read_sees_closed() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = common::tcp_pair(&ctx);
    let log: Log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    client.async_read(&FlatBuffer::new(), move |r, _| {
        l.borrow_mut().push(("read", r))
    });
    parked_write(&ctx, &client, &log);
    let l = log.clone();
    server.async_close(CloseCode::NORMAL, move |r| {
        l.borrow_mut().push(("server close", r))
    });
    ctx.run();
    // Aborting the write is not a delivered error: the read still reports `Closed`.
    let log = log.borrow();
    assert!(log.contains(&("write", ABORTED)), "{log:?}");
    assert!(log.contains(&("read", Err(Error::Closed))), "{log:?}");
    assert!(log.contains(&("server close", OK)), "{log:?}");
    assert_eq!(log.len(), 3, "{log:?}");
}
