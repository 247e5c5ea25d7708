//! Timeouts of websocket::Stream: handshake, idle, keep-alive pings, closing handshake.
//! Only lower bounds on elapsed time are asserted.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rbeast::net::{FlatBuffer, IoContext};
use rbeast::proto::close::CloseCode;
use rbeast::test::{self, fail_handler, fail_wait};
use rbeast::websocket::{FrameType, Stream, Timeout};
use rbeast::Error;

mod common;
use common::{open_pair, Captured};

type Ws = Stream<test::Stream>;

fn ms(n: u64) -> Option<Duration> {
    Some(Duration::from_millis(n))
}

#[test]
fn a_silent_client_times_out_the_accept() {
    let ctx = IoContext::new().unwrap();
    let (_client_end, server_end) = test::Stream::pair(&ctx);
    let server = Stream::new(server_end);
    server.set_timeout(Timeout {
        handshake_timeout: ms(50),
        ..Timeout::default()
    });
    let start = Instant::now();
    server.async_accept(fail_wait(Error::Timeout));
    ctx.run();
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(!server.next_layer().is_open(), "the transport is closed");
}

#[test]
fn idle_timeout_without_pings_ends_the_read_and_closes_the_transport() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        idle_timeout: ms(80),
        ..Timeout::default()
    });
    let start = Instant::now();
    server.async_read(&FlatBuffer::new(), fail_handler(Error::Timeout));
    // The client sees the connection end, with no close frame.
    client.async_read(&FlatBuffer::new(), fail_handler(Error::Eof));
    ctx.run();
    assert!(start.elapsed() >= Duration::from_millis(80));
    assert!(!client.reason().is_set());
    // Later operations are aborted.
    server.async_read(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    ctx.run();
}

#[test]
fn keep_alive_pings_keep_an_answering_peer_connected() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        idle_timeout: ms(100),
        keep_alive_pings: true,
        ..Timeout::default()
    });
    let pings = Rc::new(Cell::new(0));
    let p = pings.clone();
    client.set_control_callback(move |kind, _| {
        if kind == FrameType::Ping {
            p.set(p.get() + 1);
        }
    });
    let server_done = Captured::new();
    server.async_read(&FlatBuffer::new(), server_done.result_handler());
    // The client only reads: it answers pings automatically.
    client.async_read(&FlatBuffer::new(), |_, _| {});
    ctx.run_for(Duration::from_millis(600));
    assert!(
        pings.get() >= 3,
        "pings every half idle period: {}",
        pings.get()
    );
    assert!(
        !server_done.is_set(),
        "the answering peer was not timed out"
    );
    // A peer that stops reading (and so stops answering) is timed out.
    client.next_layer().close();
    ctx.run();
    assert!(server_done.is_set());
}

#[test]
fn keep_alive_times_out_a_peer_that_never_answers() {
    let ctx = IoContext::new().unwrap();
    let (_client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        idle_timeout: ms(100),
        keep_alive_pings: true,
        ..Timeout::default()
    });
    let start = Instant::now();
    server.async_read(&FlatBuffer::new(), fail_handler(Error::Timeout));
    ctx.run();
    assert!(start.elapsed() >= Duration::from_millis(100));
}

#[test]
fn the_closing_handshake_is_bounded_by_the_handshake_timeout() {
    let ctx = IoContext::new().unwrap();
    let (_client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        handshake_timeout: ms(60),
        ..Timeout::default()
    });
    // The client never reads, so it never answers the close.
    server.async_close(CloseCode::NORMAL, fail_wait(Error::Timeout));
    ctx.run();
}

#[test]
fn with_a_read_pending_the_read_gets_the_timeout_and_the_close_is_aborted() {
    let ctx = IoContext::new().unwrap();
    let (_client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        handshake_timeout: ms(60),
        ..Timeout::default()
    });
    server.async_read(&FlatBuffer::new(), fail_handler(Error::Timeout));
    server.async_close(CloseCode::NORMAL, fail_wait(Error::OperationAborted));
    ctx.run();
}

/// Has `client` send `count` messages, one every `period`.
fn send_ticks(ctx: &IoContext, client: Ws, period: Duration, count: u32) {
    fn tick(timer: Rc<rbeast::net::SteadyTimer>, client: Ws, period: Duration, left: u32) {
        if left == 0 {
            return;
        }
        timer.expires_after(period);
        let t = timer.clone();
        timer.async_wait(move |_| {
            client.async_write(&b"tick"[..], |_, _| {});
            tick(t, client, period, left - 1);
        });
    }
    tick(
        Rc::new(rbeast::net::SteadyTimer::new(ctx)),
        client,
        period,
        count,
    );
}

#[test]
fn data_keeps_a_connection_alive_without_pings() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        idle_timeout: ms(300),
        ..Timeout::default()
    });
    // The client sends a message every 50 ms; the server echo-reads them.
    send_ticks(&ctx, client.clone(), Duration::from_millis(50), 12);
    let received = Rc::new(Cell::new(0));
    fn read_loop(server: Ws, received: Rc<Cell<u32>>, handle: rbeast::net::Handle) {
        let s = server.clone();
        server.async_read(&FlatBuffer::new(), move |r, _| {
            if r.is_ok() {
                received.set(received.get() + 1);
                if received.get() == 12 {
                    // 600 ms after the start, two idle periods: still open.
                    assert!(s.is_open());
                    handle.stop();
                    return;
                }
                read_loop(s, received, handle);
            }
        });
    }
    read_loop(server.clone(), received.clone(), ctx.handle().clone());
    let start = Instant::now();
    ctx.run();
    assert_eq!(received.get(), 12, "every tick arrived before any timeout");
    assert!(start.elapsed() >= Duration::from_millis(600));
}

#[test]
fn the_idle_bound_runs_from_the_last_read() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = open_pair(&ctx);
    server.set_timeout(Timeout {
        idle_timeout: ms(150),
        ..Timeout::default()
    });
    // Four messages 60 ms apart: each read restarts the idle period, which ends 150 ms
    // after the last one, not 150 ms after the first read was started.
    send_ticks(&ctx, client.clone(), Duration::from_millis(60), 4);
    let last_read = Rc::new(Cell::new(None::<Instant>));
    let timed_out = Rc::new(Cell::new(None::<Instant>));
    fn read_loop(
        server: Ws,
        last_read: Rc<Cell<Option<Instant>>>,
        timed_out: Rc<Cell<Option<Instant>>>,
    ) {
        let s = server.clone();
        server.async_read(&FlatBuffer::new(), move |r, _| match r {
            Ok(()) => {
                last_read.set(Some(Instant::now()));
                read_loop(s, last_read, timed_out);
            }
            Err(e) => {
                assert_eq!(e, Error::Timeout);
                timed_out.set(Some(Instant::now()));
            }
        });
    }
    read_loop(server.clone(), last_read.clone(), timed_out.clone());
    client.async_read(&FlatBuffer::new(), |_, _| {});
    ctx.run();
    let (last, end) = (last_read.get().unwrap(), timed_out.get().unwrap());
    assert!(
        end.duration_since(last) >= Duration::from_millis(140),
        "{:?}",
        end - last
    );
}
