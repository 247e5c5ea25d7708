//! Brute-force cancellation (Beast's cancel.cpp): a whole client/server script over loopback
//! TCP, re-run with the connection cut (the transport closed under the stream, the port of
//! asio's terminal cancellation) after each step k of the run loop, on either side. Every
//! operation must complete exactly once, with success or an error of the allowed set, and
//! the run must end.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::proto::close::CloseCode;
use rbeast::websocket::Stream;
use rbeast::Error;

type Ws = Stream<TcpStream>;
type Results = Rc<RefCell<Vec<(&'static str, Result<(), Error>)>>>;
/// A stream once the script has created it.
type Slot = Rc<RefCell<Option<Ws>>>;

thread_local! {
    /// Operations started by the script in this thread.
    static STARTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn started() {
    STARTED.with(|s| s.set(s.get() + 1));
}

fn allowed(e: &Error) -> bool {
    matches!(e, Error::OperationAborted | Error::Eof | Error::Closed)
        || e.is_io(std::io::ErrorKind::ConnectionReset)
        || e.is_io(std::io::ErrorKind::BrokenPipe)
}

/// Starts the script; returns the two streams (the client once connected) and the log.
fn script(ctx: &IoContext) -> (Slot, Slot, Results) {
    let results: Results = Rc::new(RefCell::new(Vec::new()));
    let acceptor = TcpAcceptor::bind(ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let server_slot = Rc::new(RefCell::new(None));
    let client_slot = Rc::new(RefCell::new(None));
    let log = |results: &Results, name: &'static str, r: &Result<(), Error>| {
        results.borrow_mut().push((name, r.clone()));
        r.is_ok()
    };
    // Server: accept, pong, read the message, read the close.
    {
        let (res, slot) = (results.clone(), server_slot.clone());
        let keep_listening = acceptor.clone();
        acceptor.async_accept(move |r| {
            drop(keep_listening);
            let sock = r.unwrap();
            let ws = Stream::new(sock);
            *slot.borrow_mut() = Some(ws.clone());
            let w = ws.clone();
            started();
            ws.async_accept(move |r| {
                if !log(&res, "accept", &r) {
                    return;
                }
                let res2 = res.clone();
                started();
                w.async_pong(b"", move |r| {
                    log(&res2, "pong", &r);
                });
                let (w2, buf, res3) = (w.clone(), FlatBuffer::new(), res.clone());
                let b = buf.clone();
                started();
                w.async_read(&buf, move |r, _| {
                    if !log(&res3, "read 1", &r) {
                        return;
                    }
                    assert_eq!(&*b.data(), b"part 1, part 2");
                    let res4 = res3.clone();
                    started();
                    w2.async_read(&b, move |r, _| {
                        log(&res4, "read 2", &r);
                    });
                });
            });
        });
    }
    // Client: connect, handshake, ping, two write_some parts, close.
    {
        let (res, slot) = (results.clone(), client_slot.clone());
        let sock = TcpStream::new(ctx);
        let s = sock.clone();
        started();
        sock.async_connect(addr, move |r| {
            if !log(&res, "connect", &r) {
                return;
            }
            let ws = Stream::new(s);
            *slot.borrow_mut() = Some(ws.clone());
            let w = ws.clone();
            started();
            ws.async_handshake("127.0.0.1", "/", move |r| {
                if !log(&res, "handshake", &r) {
                    return;
                }
                let res2 = res.clone();
                started();
                w.async_ping(b"", move |r| {
                    log(&res2, "ping", &r);
                });
                let (w2, res3) = (w.clone(), res.clone());
                started();
                w.async_write_some(false, &b"part 1, "[..], move |r, _| {
                    if !log(&res3, "write 1", &r) {
                        return;
                    }
                    let (w3, res4) = (w2.clone(), res3.clone());
                    started();
                    w2.async_write_some(true, &b"part 2"[..], move |r, _| {
                        if !log(&res4, "write 2", &r) {
                            return;
                        }
                        let res5 = res4.clone();
                        let keep = w3.clone();
                        started();
                        w3.async_close(CloseCode::NORMAL, move |r| {
                            drop(keep);
                            log(&res5, "close", &r);
                        });
                    });
                });
            });
        });
    }
    (server_slot, client_slot, results)
}

#[test]
fn the_script_completes_without_cancellation() {
    let ctx = IoContext::new().unwrap();
    let (_s, _c, results) = script(&ctx);
    ctx.run();
    let results = results.borrow();
    assert!(
        results
            .iter()
            .all(|(_, r)| r.is_ok() || *r == Err(Error::Closed)),
        "{results:?}"
    );
    let names: Vec<_> = results.iter().map(|(n, _)| *n).collect();
    for op in [
        "accept",
        "pong",
        "read 1",
        "read 2",
        "connect",
        "handshake",
        "ping",
        "write 1",
        "write 2",
        "close",
    ] {
        assert!(names.contains(&op), "{op} missing from {names:?}");
    }
}

#[test]
fn cutting_the_connection_after_any_step_ends_every_operation_cleanly() {
    // Count the steps of an undisturbed run.
    let steps = {
        let ctx = IoContext::new().unwrap();
        let _script = script(&ctx);
        let mut n = 0;
        while ctx.run_one() > 0 {
            n += 1;
        }
        n
    };
    assert!(steps > 10, "the script has several steps: {steps}");
    let mut cancellations_seen = 0;
    for side in ["server", "client"] {
        for k in 0..steps {
            let ctx = IoContext::new().unwrap();
            STARTED.with(|s| s.set(0));
            let (server, client, results) = script(&ctx);
            for _ in 0..k {
                ctx.run_one();
            }
            let target = if side == "server" { &server } else { &client };
            if let Some(ws) = target.borrow().as_ref() {
                ws.next_layer_mut().close();
            }
            ctx.run_for(Duration::from_secs(20));
            let started = STARTED.with(|s| s.get());
            assert_eq!(
                results.borrow().len(),
                started,
                "{side} cut after step {k}: every operation started completed"
            );
            for (name, r) in results.borrow().iter() {
                if let Err(e) = r {
                    assert!(allowed(e), "{side} cut after step {k}: {name} got {e:?}");
                    if *e == Error::OperationAborted {
                        cancellations_seen += 1;
                    }
                }
            }
        }
    }
    assert!(cancellations_seen > 0, "some operation saw the cut");
}
