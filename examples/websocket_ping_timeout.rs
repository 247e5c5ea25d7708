//! Keep-alive pings, an idle timeout and the control callback: a client that stays
//! connected while reading, printing every ping, pong and close it receives, and answering
//! the server's pings automatically.
//!
//! Usage: `websocket_ping_timeout <host> <port> <seconds>`: stays connected for that long,
//! sending a ping of its own each second, then closes.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use rbeast::net::{FlatBuffer, IoContext, SteadyTimer, TcpStream};
use rbeast::proto::close::CloseCode;
use rbeast::websocket::{FrameType, Stream, Timeout};
use rbeast::Error;

type Ws = Stream<TcpStream>;

/// Keeps a read pending: a read is what answers pings and notices the idle timeout.
fn read_loop(ws: Ws, buffer: FlatBuffer) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, _| match r {
        Ok(()) => {
            println!("message: {}", b.to_string_lossy());
            b.clear();
            read_loop(w, b);
        }
        Err(Error::Closed) => println!("closed by the peer: {:?}", w.reason().code),
        Err(Error::Timeout) => println!("idle timeout: the peer stopped answering"),
        Err(Error::OperationAborted) => {} // our own close took over the read
        Err(e) => eprintln!("read: {e}"),
    });
}

/// Sends a ping every second until `left` reaches zero, then closes.
fn tick(ws: Ws, timer: Rc<SteadyTimer>, left: u64) {
    timer.expires_after(Duration::from_secs(1));
    let t = timer.clone();
    timer.async_wait(move |r| {
        if r.is_err() {
            return;
        }
        if left == 0 {
            let keep = ws.clone();
            ws.async_close(CloseCode::NORMAL, move |r| {
                drop(keep);
                println!("closed: {r:?}");
            });
            return;
        }
        ws.async_ping(b"are you there?", |r| {
            if let Err(e) = r {
                eprintln!("ping: {e}");
            }
        });
        tick(ws, t, left - 1);
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("Usage: websocket_ping_timeout <host> <port> <seconds>");
        return ExitCode::FAILURE;
    }
    let (Ok(port), Ok(seconds)) = (args[2].parse::<u16>(), args[3].parse::<u64>()) else {
        eprintln!("invalid port or duration");
        return ExitCode::FAILURE;
    };
    let addrs: Vec<_> = match (args[1].as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            eprintln!("resolve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(ctx) = IoContext::new() else {
        return ExitCode::FAILURE;
    };
    let sock = TcpStream::new(&ctx);
    let ws = Stream::new(sock.clone());
    // Time out after 10 s with nothing received; with keep-alive pings, a ping goes out
    // after 5 s of silence and the connection times out only if 5 more pass.
    ws.set_timeout(Timeout {
        handshake_timeout: Some(Duration::from_secs(30)),
        idle_timeout: Some(Duration::from_secs(10)),
        keep_alive_pings: true,
    });
    ws.set_control_callback(|kind, payload| match kind {
        FrameType::Ping => println!("ping received: {:?}", String::from_utf8_lossy(payload)),
        FrameType::Pong => println!("pong received: {:?}", String::from_utf8_lossy(payload)),
        FrameType::Close => println!("close received: {:?}", String::from_utf8_lossy(payload)),
    });
    let timer = Rc::new(SteadyTimer::new(&ctx));
    let host = format!("{}:{port}", args[1]);
    sock.async_connect_any(addrs, move |r| {
        if let Err(e) = r {
            return eprintln!("connect: {e}");
        }
        let w = ws.clone();
        ws.async_handshake(&host, "/", move |r| {
            if let Err(e) = r {
                return eprintln!("handshake: {e}");
            }
            read_loop(w.clone(), FlatBuffer::new());
            tick(w, timer, seconds);
        });
    });
    ctx.run();
    ExitCode::SUCCESS
}
