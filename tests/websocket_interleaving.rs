//! Operations started back to back before the context runs (Beast's "suspend" tests): the
//! order and the result of every completion.

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::{FlatBuffer, IoContext};
use rbeast::proto::close::CloseCode;
use rbeast::test;
use rbeast::websocket::Stream;
use rbeast::{Error, Role};

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

fn start(ws: &Ws, op: Op, log: &Log) {
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
