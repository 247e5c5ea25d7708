//! The echo server measured by the side-by-side benchmark harness: one context on one
//! thread, listening on 127.0.0.1, echoing each message with its opcode. It is the plain
//! handler-based loop (async_read → async_write → async_read): the batching of system calls
//! comes from the stream's corked writes, not from anything special here. Each stream has
//! Beast's suggested server timeouts (handshake bound, idle bound with keep-alive pings), so
//! an idle connection carries a pending read and an armed idle timer.
//!
//! Usage: `websocket_server_bench --port P [--deflate]`.

use std::net::SocketAddr;
use std::process::ExitCode;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::websocket::{Stream, Timeout};
use rbeast::Role;

fn echo(ws: Stream<TcpStream>, buffer: FlatBuffer) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, _| {
        if r.is_err() {
            return; // closed by the peer, or a protocol error already answered
        }
        w.set_binary(w.got_binary());
        let message = b.take();
        let w2 = w.clone();
        w.async_write(message, move |r, _| {
            if r.is_ok() {
                echo(w2, b);
            }
        });
    });
}

fn accept_loop(acceptor: TcpAcceptor, deflate: bool) {
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        if let Ok(sock) = r {
            let _ = sock.set_nodelay(true);
            let ws = Stream::new(sock);
            ws.set_read_message_max(64 * 1024 * 1024);
            ws.set_timeout(Timeout::suggested(Role::Server));
            // Echo each message as one frame, as the harness's Beast server does.
            ws.set_auto_fragment(false);
            if deflate {
                let pmd = PermessageDeflate {
                    server_enable: true,
                    ..PermessageDeflate::default()
                };
                if let Err(e) = ws.set_permessage_deflate(pmd) {
                    eprintln!("permessage-deflate: {e}");
                }
            }
            let w = ws.clone();
            ws.async_accept(move |r| {
                if r.is_ok() {
                    echo(w, FlatBuffer::new());
                }
            });
        }
        accept_loop(a, deflate);
    });
}

fn main() -> ExitCode {
    let mut port = None;
    let mut deflate = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse::<u16>().ok()),
            "--deflate" => deflate = true,
            _ => {
                eprintln!("Usage: websocket_server_bench --port P [--deflate]");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(port) = port else {
        eprintln!("Usage: websocket_server_bench --port P [--deflate]");
        return ExitCode::FAILURE;
    };
    let ctx = match IoContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("context: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpAcceptor::bind(&ctx, addr) {
        Ok(acceptor) => accept_loop(acceptor, deflate),
        Err(e) => {
            eprintln!("bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ctx.run();
    ExitCode::SUCCESS
}
