//! Tests of `test::Stream`, the in-memory transport pair, and of the handler contract on it.

use std::cell::{Cell, RefCell};
use std::io::ErrorKind;
use std::rc::Rc;

use bytes::Bytes;
use rbeast::net::{FlatBuffer, IoContext};
use rbeast::test::{fail_handler, fail_loop, success_handler, FailCount, Stream};
use rbeast::Error;

mod common;
use common::Captured;

#[test]
fn bytes_written_at_one_end_are_read_at_the_other() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let w1 = Captured::new();
    let w2 = Captured::new();
    a.async_write(&b"hello "[..], w1.io_handler());
    let buf = FlatBuffer::new();
    let r = Captured::new();
    b.async_read(&buf, 11, r.io_handler());
    ctx.poll();
    assert_eq!(w1.take(), Some((Ok(()), 6)));
    assert!(!r.is_set(), "only 6 of 11 bytes so far");
    // The read stays pending and completes when the rest arrives.
    a.async_write(&b"world"[..], w2.io_handler());
    ctx.run();
    assert_eq!(w2.take(), Some((Ok(()), 5)));
    assert_eq!(r.take(), Some((Ok(()), 11)));
    assert_eq!(&*buf.data(), b"hello world");
    // And the other direction.
    b.async_write(&b"back"[..], success_handler());
    let back = FlatBuffer::new();
    let r = Captured::new();
    a.async_read_some(&back, r.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Ok(()), 4)));
    assert_eq!(&*back.data(), b"back");
}

#[test]
fn read_size_one_forces_one_byte_reads() {
    const N: usize = 37;
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    b.read_size(1);
    let payload: Vec<u8> = (0..N as u8).collect();
    a.async_write(Bytes::from(payload.clone()), success_handler());
    let buf = FlatBuffer::new();
    let r = Captured::new();
    b.async_read(&buf, N, r.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Ok(()), N)));
    assert_eq!(&*buf.data(), &payload[..]);
    assert_eq!(b.nread(), N, "one read call per byte");
    assert_eq!(b.nread_bytes(), N);
    // read_some gets exactly one byte per call.
    a.async_write(&b"xyz"[..], success_handler());
    let some = FlatBuffer::new();
    let r = Captured::new();
    b.async_read_some(&some, r.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Ok(()), 1)));
    assert_eq!(&*some.data(), b"x");
    assert_eq!(b.str(), "yz");
}

#[test]
fn write_size_three_forces_partial_writes() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    a.write_size(3);
    let payload: Vec<u8> = (0..100u8).collect();
    let w = Captured::new();
    a.async_write(Bytes::from(payload.clone()), w.io_handler());
    ctx.run();
    assert_eq!(w.take(), Some((Ok(()), 100)));
    assert_eq!(a.nwrite(), 34, "33 writes of 3 bytes and one of 1");
    assert_eq!(a.nwrite_bytes(), 100);
    assert_eq!(&b.input()[..], &payload[..]);
    // write_some takes one capped write.
    let w = Captured::new();
    a.async_write_some(&b"abcdef"[..], w.io_handler());
    ctx.run();
    assert_eq!(w.take(), Some((Ok(()), 3)));
    assert_eq!(a.nwrite(), 35);
}

#[test]
fn write_capacity_makes_writes_wait_for_the_peer_to_read() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    a.write_capacity(10);
    let payload: Vec<u8> = (0..100u8).collect();
    let w = Captured::new();
    a.async_write(Bytes::from(payload.clone()), w.io_handler());
    // `poll`, not `run`: the waiting write is outstanding work, and nothing would end it.
    while ctx.poll() > 0 {}
    assert!(!w.is_set(), "the write waits with the peer's input full");
    assert_eq!(&b.input()[..], &payload[..10]);
    // Each read makes room; the write goes on and completes once all of it is taken.
    let got = Rc::new(RefCell::new(Vec::new()));
    fn read_all(b: Stream, got: Rc<RefCell<Vec<u8>>>) {
        let buf = FlatBuffer::new();
        let (b2, buf2) = (b.clone(), buf.clone());
        b.async_read_some(&buf, move |r, n| {
            r.unwrap();
            got.borrow_mut().extend_from_slice(&buf2.data()[..n]);
            if got.borrow().len() < 100 {
                read_all(b2, got);
            }
        });
    }
    read_all(b.clone(), got.clone());
    ctx.run();
    assert_eq!(w.take(), Some((Ok(()), 100)));
    assert_eq!(*got.borrow(), payload);
    assert!(a.nwrite() >= 10, "at most 10 bytes a write: {}", a.nwrite());
    // Without a peer, taking the output makes room.
    let c = Stream::new(&ctx);
    c.write_capacity(4);
    let w = Captured::new();
    c.async_write(&b"abcdefgh"[..], w.io_handler());
    while ctx.poll() > 0 {}
    assert!(!w.is_set());
    assert_eq!(&c.take_output()[..], b"abcd");
    ctx.run();
    assert_eq!(w.take(), Some((Ok(()), 8)));
    assert_eq!(&c.take_output()[..], b"efgh");
}

#[test]
fn append_injects_input_and_str_shows_it() {
    let ctx = IoContext::new().unwrap();
    let s = Stream::new(&ctx);
    s.append(b"GET / HTTP/1.1\r\n");
    s.append(&[0x81, 0xff]);
    assert_eq!(s.str(), "GET / HTTP/1.1\r\n\u{81}\u{ff}");
    let buf = FlatBuffer::new();
    let r = Captured::new();
    s.async_read(&buf, 5, r.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Ok(()), 5)));
    assert_eq!(&*buf.data(), b"GET /");
    assert_eq!(
        s.str(),
        " HTTP/1.1\r\n\u{81}\u{ff}",
        "str() shows only unread input"
    );
    // A stream without a peer keeps what it writes.
    s.async_write(&b"reply"[..], success_handler());
    ctx.run();
    assert_eq!(&s.take_output()[..], b"reply");
    assert!(s.take_output().is_empty());
}

#[test]
fn close_lets_the_peer_drain_then_see_eof_and_fail_writes() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    a.async_write(&b"left over"[..], success_handler());
    ctx.run();
    // A read pending on the closing end is aborted.
    a.async_read_some(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    a.close();
    assert!(!a.is_open());
    ctx.run();
    let buf = FlatBuffer::new();
    let r = Captured::new();
    b.async_read(&buf, 100, r.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Err(Error::Eof), 9)));
    assert_eq!(&*buf.data(), b"left over");
    // Once drained, every read is end of stream.
    b.async_read_some(&FlatBuffer::new(), fail_handler(Error::Eof));
    ctx.run();
    let w = Captured::new();
    b.async_write(&b"into the void"[..], w.io_handler());
    ctx.run();
    let (result, n) = w.take().expect("the handler ran");
    assert_eq!(n, 0);
    let err = result.unwrap_err();
    assert!(err.is_io(ErrorKind::ConnectionReset), "{err:?}");
    // The closed end refuses new operations.
    a.async_write(&b"x"[..], fail_handler(Error::OperationAborted));
    a.async_read_some(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    ctx.run();
}

#[test]
fn close_wakes_a_read_already_pending_on_the_peer() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let r = Captured::new();
    b.async_read_some(&FlatBuffer::new(), r.io_handler());
    assert_eq!(ctx.poll(), 0, "nothing to read yet");
    a.close();
    ctx.run();
    assert_eq!(r.take(), Some((Err(Error::Eof), 0)));
}

#[test]
fn dropping_one_end_is_like_closing_it() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let r = Captured::new();
    let buf = FlatBuffer::new();
    b.async_read(&buf, 10, r.io_handler());
    a.async_write(&b"bye"[..], success_handler());
    ctx.run_one();
    drop(a);
    ctx.run();
    assert_eq!(r.take(), Some((Err(Error::Eof), 3)));
    assert_eq!(&*buf.data(), b"bye");
    let w = Captured::new();
    b.async_write(&b"x"[..], w.io_handler());
    ctx.run();
    let (result, _) = w.take().expect("the handler ran");
    assert!(result.unwrap_err().is_io(ErrorKind::ConnectionReset));
}

#[test]
fn close_remote_ends_the_input_but_not_the_output() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    b.append(b"tail");
    b.close_remote();
    let buf = FlatBuffer::new();
    let r = Captured::new();
    b.async_read(&buf, 10, r.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Err(Error::Eof), 4)));
    assert_eq!(&*buf.data(), b"tail");
    // Writing still works: close_remote only ends this end's input.
    assert!(b.is_open());
    b.async_write(&b"still here"[..], success_handler());
    ctx.run();
    assert_eq!(a.str(), "still here");
}

#[test]
fn counters_count_calls_and_bytes_on_each_end() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    for msg in [&b"one"[..], &b"three"[..]] {
        a.async_write(msg, success_handler());
        ctx.run();
    }
    let buf = FlatBuffer::new();
    b.async_read(&buf, 8, success_handler());
    ctx.run();
    assert_eq!((a.nwrite(), a.nwrite_bytes()), (2, 8));
    assert_eq!((a.nread(), a.nread_bytes()), (0, 0));
    assert_eq!((b.nwrite(), b.nwrite_bytes()), (0, 0));
    assert_eq!(b.nread_bytes(), 8);
    assert_eq!(
        b.nread(),
        1,
        "both writes were waiting: one read takes them"
    );
    // A read that finds nothing does not count.
    b.async_read_some(&buf, fail_handler(Error::OperationAborted));
    assert_eq!(ctx.poll(), 0);
    b.cancel();
    ctx.run();
    assert_eq!(b.nread(), 1);
}

#[test]
fn a_second_read_gets_already_started_and_the_first_keeps_working() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let order = Rc::new(RefCell::new(Vec::new()));
    let buf = FlatBuffer::new();
    let o = order.clone();
    b.async_read(&buf, 4, move |r, n| {
        assert_eq!((r, n), (Ok(()), 4));
        o.borrow_mut().push("first");
    });
    let o = order.clone();
    let other = FlatBuffer::new();
    b.async_read_some(&other, move |r, n| {
        assert_eq!((r, n), (Err(Error::AlreadyStarted), 0));
        o.borrow_mut().push("second");
    });
    ctx.poll();
    assert_eq!(*order.borrow(), vec!["second"]);
    a.async_write(&b"data"[..], success_handler());
    ctx.run();
    assert_eq!(*order.borrow(), vec!["second", "first"]);
    assert_eq!(&*buf.data(), b"data");
    assert_eq!(other.size(), 0, "the rejected read touched nothing");
}

#[test]
fn a_write_is_outstanding_only_until_it_completes() {
    // Memory never blocks, so a write completes inside the loop that advances it; its
    // handler is queued and the next write is accepted, as in Beast (the write lock is
    // released before the completion is posted). The bytes stay in order.
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    a.write_size(1);
    let w1 = Captured::new();
    let w2 = Captured::new();
    a.async_write(&b"abc"[..], w1.io_handler());
    a.async_write(&b"def"[..], w2.io_handler());
    ctx.run();
    assert_eq!(w1.take(), Some((Ok(()), 3)));
    assert_eq!(w2.take(), Some((Ok(()), 3)));
    assert_eq!(b.str(), "abcdef");
}

#[test]
fn cancel_aborts_pending_reads_and_leaves_the_stream_usable() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let buf = FlatBuffer::new();
    let r = Captured::new();
    b.async_read(&buf, 10, r.io_handler());
    a.async_write(&b"part"[..], success_handler());
    ctx.run_one();
    ctx.poll();
    b.cancel();
    ctx.run();
    assert_eq!(r.take(), Some((Err(Error::OperationAborted), 4)));
    assert!(b.is_open());
    a.async_write(&b"more"[..], success_handler());
    b.async_read(&buf, 4, success_handler());
    ctx.run();
    assert_eq!(&*buf.data(), b"partmore");
}

#[test]
fn handlers_never_run_inside_the_initiating_call() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let ran = Rc::new(Cell::new(0));
    let count = |ran: &Rc<Cell<i32>>| {
        let ran = ran.clone();
        move |_: Result<(), Error>, _: usize| ran.set(ran.get() + 1)
    };
    // Completes at once: writes into memory never block.
    a.async_write(&b"ready"[..], count(&ran));
    assert_eq!(ran.get(), 0);
    // Data already waiting.
    ctx.run();
    assert_eq!(ran.get(), 1);
    b.async_read_some(&FlatBuffer::new(), count(&ran));
    assert_eq!(ran.get(), 1);
    // A second read while one is pending.
    a.async_read_some(&FlatBuffer::new(), count(&ran));
    a.async_read_some(&FlatBuffer::new(), count(&ran));
    assert_eq!(ran.get(), 1);
    // A closed stream.
    let closed = Stream::new(&ctx);
    closed.close();
    closed.async_write(&b"x"[..], count(&ran));
    closed.async_read_some(&FlatBuffer::new(), count(&ran));
    assert_eq!(ran.get(), 1);
    ctx.poll();
    // b's read, a's rejected second read, the closed stream's two operations.
    assert_eq!(ran.get(), 5);
    a.cancel();
    ctx.run();
    assert_eq!(ran.get(), 6);
}

#[test]
fn a_handler_may_start_the_next_operation_on_its_stream() {
    // The normal Beast pattern: no RefCell of ours is borrowed while a handler runs.
    let ctx = IoContext::new().unwrap();
    let (a, b) = Stream::pair(&ctx);
    let total = Rc::new(Cell::new(0));
    fn read_loop(s: Stream, buf: FlatBuffer, total: Rc<Cell<usize>>) {
        let (s2, b2) = (s.clone(), buf.clone());
        s.async_read_some(&buf, move |r, n| {
            if r.is_ok() {
                total.set(total.get() + n);
                b2.clear();
                read_loop(s2, b2, total);
            } else {
                assert_eq!(r, Err(Error::Eof));
            }
        });
    }
    read_loop(b, FlatBuffer::new(), total.clone());
    a.write_size(7);
    a.async_write(Bytes::from(vec![1u8; 1000]), success_handler());
    ctx.run_one();
    a.close();
    ctx.run();
    assert_eq!(total.get(), 1000);
}

#[test]
fn dropping_the_context_drops_pending_handlers_and_the_streams_they_hold() {
    struct Tracker(Rc<Cell<usize>>);
    impl Drop for Tracker {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0));
    let invoked = Rc::new(Cell::new(false));
    {
        let ctx = IoContext::new().unwrap();
        let (a, b) = Stream::pair(&ctx);
        // Each end's pending read captures the end itself: a cycle only the context breaks.
        for s in [a, b] {
            let (me, tracker, flag) = (s.clone(), Tracker(drops.clone()), invoked.clone());
            s.async_read_some(&FlatBuffer::new(), move |_, _| {
                flag.set(true);
                drop((me, tracker));
            });
        }
        ctx.post({
            let tracker = Tracker(drops.clone());
            let flag = invoked.clone();
            move || {
                flag.set(true);
                drop(tracker);
            }
        });
        assert_eq!(drops.get(), 0);
        drop(ctx);
    }
    assert_eq!(drops.get(), 3, "every captured object was freed");
    assert!(!invoked.get(), "no handler ran");
}

/// The echo scenario: the client writes a message, the server echoes what it reads, the
/// client reads the echo. `fc` is installed on `faulty` ("client" or "server"). Returns the
/// first error of the faulty end, after checking what the other end saw.
fn echo_scenario(fc: FailCount, faulty: &str) -> Result<(), Error> {
    const MSG: &[u8] = b"a message of 23 bytes!!";
    let ctx = IoContext::new().unwrap();
    let (client, server) = Stream::pair(&ctx);
    // Small reads and writes multiply the failure points.
    server.read_size(5);
    server.write_size(4);
    client.write_size(6);
    client.read_size(7);
    let faulty_end = if faulty == "server" { &server } else { &client };
    faulty_end.set_fail_count(fc.clone());
    let server_err: Rc<RefCell<Option<Error>>> = Rc::default();
    let client_err: Rc<RefCell<Option<Error>>> = Rc::default();

    fn echo(s: Stream, buf: FlatBuffer, left: usize, err: Rc<RefCell<Option<Error>>>) {
        if left == 0 {
            return;
        }
        let (s2, b2) = (s.clone(), buf.clone());
        s.async_read_some(&buf, move |r, n| {
            if let Err(e) = r {
                *err.borrow_mut() = Some(e);
                s2.close();
                return;
            }
            let data = b2.take();
            assert_eq!(data.len(), n);
            let s3 = s2.clone();
            s2.async_write(data, move |r, m| {
                if let Err(e) = r {
                    *err.borrow_mut() = Some(e);
                    s3.close();
                    return;
                }
                assert_eq!(m, n);
                echo(s3, b2, left - n, err);
            });
        });
    }
    echo(
        server.clone(),
        FlatBuffer::new(),
        MSG.len(),
        server_err.clone(),
    );

    let got = FlatBuffer::new();
    {
        let (c, e) = (client.clone(), client_err.clone());
        client.async_write(MSG, move |r, n| {
            if let Err(err) = r {
                e.borrow_mut().get_or_insert(err);
                c.close();
            } else {
                assert_eq!(n, MSG.len());
            }
        });
        let (c, e) = (client.clone(), client_err.clone());
        client.async_read(&got, MSG.len(), move |r, _| {
            if let Err(err) = r {
                e.borrow_mut().get_or_insert(err);
                c.close();
            }
        });
    }
    drop((client, server));
    ctx.run();

    let server_err = server_err.borrow_mut().take();
    let client_err = client_err.borrow_mut().take();
    let (mine, theirs) = if faulty == "server" {
        (server_err, client_err)
    } else {
        (client_err, server_err)
    };
    match mine {
        None => {
            assert!(!fc.tripped());
            assert_eq!(theirs, None, "a clean run has no error at either end");
            assert_eq!(&*got.data(), MSG);
            Ok(())
        }
        Some(e) => {
            assert!(fc.tripped(), "an error without an injected failure: {e:?}");
            // The healthy end only ever sees the faulty end going away.
            if let Some(t) = &theirs {
                assert!(
                    *t == Error::Eof || t.is_io(ErrorKind::ConnectionReset),
                    "the healthy end saw {t:?}"
                );
            }
            Err(e)
        }
    }
}

#[test]
fn fail_loop_over_an_echo_with_failures_on_the_server() {
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let n = fail_loop(1000, move |fc| {
        r.set(r.get() + 1);
        echo_scenario(fc, "server")
    });
    // 23 bytes in reads of at most 5: at least 5 reads and 5 (or more) writes by the server.
    assert!(n > 10, "succeeded at n = {n}: too few failure points");
    assert_eq!(runs.get(), n + 1, "every n from 0 was tried");
}

#[test]
fn fail_loop_over_an_echo_with_failures_on_the_client() {
    let n = fail_loop(1000, |fc| echo_scenario(fc, "client"));
    // 23 bytes in writes of at most 6 and reads of at most 7: at least 4 + 4 calls.
    assert!(n > 8, "succeeded at n = {n}: too few failure points");
}

#[test]
fn fail_count_also_fails_the_transport_calls_directly() {
    use rbeast::net::Transport;
    let ctx = IoContext::new().unwrap();
    let (mut a, _b) = Stream::pair(&ctx);
    a.set_fail_count(FailCount::new(2));
    assert!(a.write_vectored(&[std::io::IoSlice::new(b"ok")]).is_ok());
    let e = a
        .write_vectored(&[std::io::IoSlice::new(b"no")])
        .unwrap_err();
    assert_eq!(Error::from(e), Error::TestFailure);
    let e = a.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(Error::from(e), Error::TestFailure, "failures persist");
}

#[test]
fn shutdown_write_is_eof_for_the_peer_and_broken_pipe_for_us() {
    use rbeast::net::Transport;
    let ctx = IoContext::new().unwrap();
    let (mut a, b) = Stream::pair(&ctx);
    a.async_write(&b"fin"[..], success_handler());
    ctx.run();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    let buf = FlatBuffer::new();
    let r = Captured::new();
    b.async_read(&buf, 10, r.io_handler());
    let w = Captured::new();
    a.async_write(&b"late"[..], w.io_handler());
    ctx.run();
    assert_eq!(r.take(), Some((Err(Error::Eof), 3)));
    let (result, _) = w.take().expect("the handler ran");
    assert!(result.unwrap_err().is_io(ErrorKind::BrokenPipe));
    // The other direction still works.
    b.async_write(&b"reply"[..], success_handler());
    ctx.run();
    assert_eq!(a.str(), "reply");
}
