//! An echo load generator built on rbeast itself, for what the shared load generator does
//! not speak (`wss://`): C connections, each keeping D binary messages of S bytes in flight,
//! for a fixed time; prints the echoed messages per second. Every echo is checked for its
//! length; the first and last bytes carry a sequence number that is checked too.
//!
//! Usage: `websocket_client_bench --port P [--conns 16] [--size 16384] [--depth 4]
//! [--seconds 5] [--tls ca.pem]` against `websocket_server_bench --port P [--tls cert key]`
//! on 127.0.0.1. `--tls` (built with the `tls` feature) connects over TLS, trusting the
//! certificates of `ca.pem`, with the server name `localhost`.

use std::cell::Cell;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rbeast::net::{FlatBuffer, IoContext, TcpStream, Transport};
use rbeast::websocket::{Stream, WriteQueue};

const USAGE: &str = "Usage: websocket_client_bench --port P [--conns 16] [--size 16384] \
                     [--depth 4] [--seconds 5] [--tls ca.pem]";

struct Settings {
    port: u16,
    conns: usize,
    size: usize,
    depth: usize,
    seconds: u64,
    ca: Option<String>,
}

/// Counts echoes until the deadline.
struct Tally {
    echoed: Cell<u64>,
    deadline: Instant,
    failed: Cell<bool>,
}

/// A message whose first and last bytes carry `seq`.
fn message(size: usize, seq: u64) -> bytes::Bytes {
    let mut m = vec![0x5a; size.max(2)];
    let first = m.len() - 1;
    m[0] = seq as u8;
    m[first] = seq as u8;
    bytes::Bytes::from(m)
}

/// Reads echoes; each one sends the next message until the deadline, then closes.
fn read_loop<T: Transport>(
    ws: Stream<T>,
    queue: Rc<WriteQueue<T>>,
    buffer: FlatBuffer,
    seq: u64,
    size: usize,
    tally: Rc<Tally>,
    depth: u64,
) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, n| {
        if let Err(e) = r {
            eprintln!("read: {e}");
            tally.failed.set(true);
            return;
        }
        let data = b.take();
        let ok = n == size.max(2) && data[0] == seq as u8 && data[n - 1] == seq as u8;
        if !ok {
            eprintln!("echo {seq} is wrong ({n} bytes)");
            tally.failed.set(true);
            return;
        }
        tally.echoed.set(tally.echoed.get() + 1);
        if Instant::now() >= tally.deadline {
            let keep = w.clone();
            w.async_close(rbeast::proto::close::CloseCode::NORMAL, move |_| drop(keep));
            return;
        }
        queue.send(message(size, seq + depth), true, |_, _| {});
        read_loop(w, queue, b, seq + 1, size, tally, depth);
    });
}

/// Runs the WebSocket handshake, primes the pipeline and starts reading.
fn start<T: Transport>(ws: Stream<T>, settings: &Settings, tally: Rc<Tally>) {
    let (size, depth) = (settings.size, settings.depth as u64);
    let w = ws.clone();
    ws.set_read_message_max(64 << 20);
    ws.async_handshake("localhost", "/", move |r| {
        if let Err(e) = r {
            eprintln!("handshake: {e}");
            tally.failed.set(true);
            return;
        }
        let queue = Rc::new(WriteQueue::new(&w, usize::MAX / 2));
        for seq in 0..depth {
            queue.send(message(size, seq), true, |_, _| {});
        }
        read_loop(w, queue, FlatBuffer::new(), 0, size, tally, depth);
    });
}

#[cfg(feature = "tls")]
fn connect_tls(
    ctx: &IoContext,
    addr: SocketAddr,
    settings: Rc<Settings>,
    tally: Rc<Tally>,
    ca: &str,
) -> Result<(), String> {
    use rbeast::tls::{self, HandshakeType};
    let config = tls::client_config_from_ca_pem_file(ca).map_err(|e| e.to_string())?;
    let tls_ctx = tls::Context::client(config);
    for _ in 0..settings.conns {
        let sock = TcpStream::new(ctx);
        let ws = Stream::new(tls::Stream::new(sock.clone(), &tls_ctx));
        ws.next_layer()
            .set_server_name("localhost")
            .map_err(|e| e.to_string())?;
        let (settings, tally) = (settings.clone(), tally.clone());
        sock.clone().async_connect(addr, move |r| {
            if let Err(e) = r {
                eprintln!("connect: {e}");
                tally.failed.set(true);
                return;
            }
            let _ = sock.set_nodelay(true);
            let w = ws.clone();
            ws.next_layer()
                .async_handshake(HandshakeType::Client, move |r| match r {
                    Ok(()) => start(w, &settings, tally),
                    Err(e) => {
                        eprintln!("tls handshake: {e}");
                        tally.failed.set(true);
                    }
                });
        });
    }
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn connect_tls(
    _: &IoContext,
    _: SocketAddr,
    _: Rc<Settings>,
    _: Rc<Tally>,
    _: &str,
) -> Result<(), String> {
    Err("--tls needs the `tls` feature (cargo build --features tls)".into())
}

fn connect_plain(ctx: &IoContext, addr: SocketAddr, settings: Rc<Settings>, tally: Rc<Tally>) {
    for _ in 0..settings.conns {
        let sock = TcpStream::new(ctx);
        let ws = Stream::new(sock.clone());
        let (settings, tally) = (settings.clone(), tally.clone());
        sock.clone().async_connect(addr, move |r| match r {
            Ok(()) => {
                let _ = sock.set_nodelay(true);
                start(ws, &settings, tally)
            }
            Err(e) => {
                eprintln!("connect: {e}");
                tally.failed.set(true);
            }
        });
    }
}

fn parse() -> Option<Settings> {
    let mut s = Settings {
        port: 0,
        conns: 16,
        size: 16384,
        depth: 4,
        seconds: 5,
        ca: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next()?;
        match arg.as_str() {
            "--port" => s.port = value.parse().ok()?,
            "--conns" => s.conns = value.parse().ok()?,
            "--size" => s.size = value.parse().ok()?,
            "--depth" => s.depth = value.parse::<usize>().ok()?.max(1),
            "--seconds" => s.seconds = value.parse().ok()?,
            "--tls" => s.ca = Some(value),
            _ => return None,
        }
    }
    (s.port != 0).then_some(s)
}

fn main() -> ExitCode {
    let Some(settings) = parse() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let ctx = match IoContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("context: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], settings.port));
    let start_time = Instant::now();
    let tally = Rc::new(Tally {
        echoed: Cell::new(0),
        deadline: start_time + Duration::from_secs(settings.seconds),
        failed: Cell::new(false),
    });
    let settings = Rc::new(settings);
    let ca = settings.ca.clone();
    match ca {
        Some(ca) => {
            if let Err(e) = connect_tls(&ctx, addr, settings.clone(), tally.clone(), &ca) {
                eprintln!("--tls: {e}");
                return ExitCode::FAILURE;
            }
        }
        None => connect_plain(&ctx, addr, settings.clone(), tally.clone()),
    }
    ctx.run();
    let elapsed = start_time.elapsed().as_secs_f64();
    let echoed = tally.echoed.get();
    println!(
        "{} conns={} size={} depth={}: {} echoes in {:.2} s, {:.0} msgs/s, {:.1} MB/s each way",
        if settings.ca.is_some() { "wss" } else { "ws" },
        settings.conns,
        settings.size,
        settings.depth,
        echoed,
        elapsed,
        echoed as f64 / elapsed,
        echoed as f64 * settings.size as f64 / elapsed / 1e6,
    );
    if tally.failed.get() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
