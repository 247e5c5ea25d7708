//! Sends one message in two parts with `async_write_some`, and reads the reply in parts
//! with `async_read_some`, printing each part and whether the message is done.
//!
//! Usage: `websocket_client_fragmented <host> <port> <text>`, against an echo server such as
//! `websocket_server_async`.

use std::net::ToSocketAddrs;
use std::process::ExitCode;

use bytes::Bytes;
use rbeast::net::{FlatBuffer, IoContext, TcpStream};
use rbeast::proto::close::CloseCode;
use rbeast::websocket::Stream;
use rbeast::Error;

type Ws = Stream<TcpStream>;

/// Reads the reply four bytes at a time until the message is done, then closes.
fn read_parts(ws: Ws, buffer: FlatBuffer) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read_some(&buffer, 4, move |r, n| {
        if let Err(e) = r {
            return eprintln!("read: {e}");
        }
        let part = b.take();
        println!(
            "part of {n} bytes: {:?} (message done: {})",
            String::from_utf8_lossy(&part),
            w.is_message_done()
        );
        if w.is_message_done() {
            let keep = w.clone();
            w.async_close(CloseCode::NORMAL, move |r| {
                drop(keep);
                if let Err(e) = r {
                    eprintln!("close: {e}");
                }
            });
        } else {
            read_parts(w, b);
        }
    });
}

fn run(ws: Ws, host: String, text: String) {
    let w = ws.clone();
    ws.async_handshake(&host, "/", move |r| {
        if let Err(e) = r {
            return eprintln!("handshake: {e}");
        }
        // The first part starts a text message; the second, with `fin`, ends it.
        let half = text.len() / 2;
        let second = Bytes::from(text[half..].to_owned());
        let w2 = w.clone();
        w.async_write_some(false, Bytes::from(text[..half].to_owned()), move |r, n| {
            if let Err(e) = r {
                return eprintln!("write part 1: {e}");
            }
            println!("sent part 1 ({n} bytes)");
            let w3 = w2.clone();
            w2.async_write_some(true, second, move |r: Result<(), Error>, n| {
                if let Err(e) = r {
                    return eprintln!("write part 2: {e}");
                }
                println!("sent part 2 ({n} bytes)");
                read_parts(w3, FlatBuffer::new());
            });
        });
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("Usage: websocket_client_fragmented <host> <port> <text>");
        return ExitCode::FAILURE;
    }
    let Ok(port) = args[2].parse::<u16>() else {
        eprintln!("invalid port");
        return ExitCode::FAILURE;
    };
    // A blocking lookup keeps this example short; see websocket_client_async for Resolver.
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
    let (host, text) = (format!("{}:{port}", args[1]), args[3].clone());
    sock.async_connect_any(addrs, move |r| match r {
        Ok(_) => run(ws, host, text),
        Err(e) => eprintln!("connect: {e}"),
    });
    ctx.run();
    ExitCode::SUCCESS
}
