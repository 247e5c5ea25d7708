//! A loopback TCP echo benchmark on the reactor alone: server and clients in one process,
//! on one context (one thread), with every echoed message checked byte for byte.
//!
//! Usage: `tcp_echo_bench [--connections N] [--size BYTES] [--count MESSAGES]`
//! (defaults: 16 connections, 64-byte messages, 20000 messages per connection). Each
//! client sends a message, waits for its echo, checks it, and sends the next one.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};

struct Config {
    connections: usize,
    size: usize,
    count: usize,
}

fn parse_args() -> Result<Config, String> {
    let mut cfg = Config {
        connections: 16,
        size: 64,
        count: 20_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let n: usize = value.parse().map_err(|_| format!("bad number {value}"))?;
        match flag.as_str() {
            "--connections" => cfg.connections = n.max(1),
            "--size" => cfg.size = n.max(1),
            "--count" => cfg.count = n.max(1),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(cfg)
}

/// Message `seq` of connection `conn`: a pattern that differs per connection and message.
fn message(conn: usize, seq: usize, size: usize) -> Bytes {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ conn.wrapping_mul(7) ^ seq) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The server side: reads whatever arrives and writes it back.
fn echo(sock: TcpStream, buf: FlatBuffer) {
    let (s, b) = (sock.clone(), buf.clone());
    sock.async_read_some(&buf, move |r, _| {
        if r.is_err() {
            return;
        }
        let data = b.take();
        let s2 = s.clone();
        s.async_write(data, move |r, _| {
            if r.is_ok() {
                echo(s2, b);
            }
        });
    });
}

fn accept_loop(acceptor: TcpAcceptor, left: usize) {
    if left == 0 {
        return;
    }
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        let sock = r.expect("accept");
        sock.set_nodelay(true).expect("nodelay");
        echo(sock, FlatBuffer::new());
        accept_loop(a, left - 1);
    });
}

struct Client {
    sock: TcpStream,
    conn: usize,
    size: usize,
    count: usize,
    buf: FlatBuffer,
    done: Rc<Cell<usize>>,
    bad: Rc<Cell<usize>>,
}

/// Sends message `seq`, reads its echo, checks it, and goes on with the next one.
fn round_trip(c: Rc<Client>, seq: usize) {
    if seq == c.count {
        c.sock.close();
        return;
    }
    let expected = message(c.conn, seq, c.size);
    c.sock
        .async_write(expected.clone(), |r, _| r.expect("write"));
    let c2 = c.clone();
    c.sock.async_read(&c.buf, c.size, move |r, n| {
        r.expect("read");
        assert_eq!(n, c2.size);
        if *c2.buf.data() != expected[..] {
            c2.bad.set(c2.bad.get() + 1);
        }
        c2.buf.consume(n);
        c2.done.set(c2.done.get() + 1);
        round_trip(c2, seq + 1);
    });
}

fn main() -> ExitCode {
    let cfg = match parse_args() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("Usage: tcp_echo_bench [--connections N] [--size BYTES] [--count MESSAGES]");
            return ExitCode::FAILURE;
        }
    };
    let ctx = IoContext::new().expect("context");
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).expect("bind");
    let addr = acceptor.local_addr().expect("address");
    accept_loop(acceptor, cfg.connections);
    let done = Rc::new(Cell::new(0usize));
    let bad = Rc::new(Cell::new(0usize));
    let start = Rc::new(Cell::new(None::<Instant>));
    // Round trips start once every connection is up, so that only echoing is timed.
    let ready: Rc<std::cell::RefCell<Vec<Rc<Client>>>> = Rc::default();
    for conn in 0..cfg.connections {
        let sock = TcpStream::new(&ctx);
        let client = Rc::new(Client {
            sock: sock.clone(),
            conn,
            size: cfg.size,
            count: cfg.count,
            buf: FlatBuffer::new(),
            done: done.clone(),
            bad: bad.clone(),
        });
        let (start, ready, total) = (start.clone(), ready.clone(), cfg.connections);
        sock.async_connect(addr, move |r| {
            r.expect("connect");
            client.sock.set_nodelay(true).expect("nodelay");
            ready.borrow_mut().push(client);
            if ready.borrow().len() == total {
                start.set(Some(Instant::now()));
                for c in ready.borrow_mut().drain(..) {
                    round_trip(c, 0);
                }
            }
        });
    }
    ctx.run();
    let elapsed = start.get().expect("all connected").elapsed();
    let messages = done.get();
    let expected = cfg.connections * cfg.count;
    let rate = messages as f64 / elapsed.as_secs_f64();
    println!(
        "{} connections x {} messages of {} bytes: {messages} echoed in {:.3} s",
        cfg.connections,
        cfg.count,
        cfg.size,
        elapsed.as_secs_f64()
    );
    println!(
        "{rate:.0} messages/s, {:.1} MB/s each way",
        rate * cfg.size as f64 / 1e6
    );
    if messages != expected || bad.get() != 0 {
        eprintln!(
            "integrity: {messages}/{expected} echoed, {} corrupted",
            bad.get()
        );
        return ExitCode::FAILURE;
    }
    println!("integrity: all {messages} echoes matched");
    ExitCode::SUCCESS
}
