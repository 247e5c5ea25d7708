//! The echo server measured by the side-by-side benchmark harness: one context on one
//! thread, listening on 127.0.0.1, echoing each message with its opcode. It is the plain
//! handler-based loop (async_read → async_write → async_read): the batching of system calls
//! comes from the stream's corked writes, not from anything special here. Each stream has
//! Beast's suggested server timeouts (handshake bound, idle bound with keep-alive pings), so
//! an idle connection carries a pending read and an armed idle timer.
//!
//! Usage: `websocket_server_bench --port P [--deflate] [--no-context-takeover] [--idle-release
//! MS] [--tls cert.pem key.pem]`. `--deflate` accepts permessage-deflate with Beast's
//! defaults; `--no-context-takeover` also makes both directions reset their compression
//! context after every message (the server's reply says so for both), which lets idle
//! connections hold no compression state; `--idle-release MS` keeps context takeover but
//! frees a connection's compression state once its compressed messages have paused for MS
//! milliseconds (`PermessageDeflate::idle_release`). Both imply `--deflate`. With `--tls`
//! (built with the `tls` feature) it serves `wss://`: the TLS handshake first, then the
//! same echo loop over `tls::Stream<TcpStream>`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, Transport};
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::websocket::{Stream, Timeout};
use rbeast::Role;

const USAGE: &str = "Usage: websocket_server_bench --port P [--deflate] [--no-context-takeover] \
                     [--idle-release MS] [--tls cert.pem key.pem]";

fn echo<T: Transport>(ws: Stream<T>, buffer: FlatBuffer) {
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

/// Sets the session's options and runs the WebSocket accept, then the echo loop.
fn serve<T: Transport>(ws: Stream<T>, deflate: Option<PermessageDeflate>) {
    ws.set_read_message_max(64 * 1024 * 1024);
    ws.set_timeout(Timeout::suggested(Role::Server));
    // Echo each message as one frame, as the harness's Beast server does.
    ws.set_auto_fragment(false);
    if let Some(pmd) = deflate {
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

/// How connections are served: cleartext, or TLS with this context.
#[derive(Clone)]
enum Security {
    Plain,
    #[cfg(feature = "tls")]
    Tls(rbeast::tls::Context),
}

fn accept_loop(acceptor: TcpAcceptor, deflate: Option<PermessageDeflate>, security: Security) {
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        if let Ok(sock) = r {
            let _ = sock.set_nodelay(true);
            match &security {
                Security::Plain => serve(Stream::new(sock), deflate),
                #[cfg(feature = "tls")]
                Security::Tls(tls_ctx) => {
                    use rbeast::tls::{HandshakeType, Stream as TlsStream};
                    let ws = Stream::new(TlsStream::new(sock, tls_ctx));
                    let w = ws.clone();
                    ws.next_layer()
                        .async_handshake(HandshakeType::Server, move |r| {
                            if r.is_ok() {
                                serve(w, deflate);
                            }
                        });
                }
            }
        }
        accept_loop(a, deflate, security);
    });
}

/// The TLS context of `--tls cert key`.
#[cfg(feature = "tls")]
fn tls_security(cert: &str, key: &str) -> Result<Security, String> {
    let config = rbeast::tls::server_config_from_pem_files(cert, key).map_err(|e| e.to_string())?;
    Ok(Security::Tls(rbeast::tls::Context::server(config)))
}

#[cfg(not(feature = "tls"))]
fn tls_security(_cert: &str, _key: &str) -> Result<Security, String> {
    Err("--tls needs the `tls` feature (cargo build --features tls)".into())
}

fn main() -> ExitCode {
    let mut port = None;
    let (mut deflate, mut no_context_takeover, mut idle_release) = (false, false, None);
    let mut security = Security::Plain;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse::<u16>().ok()),
            "--deflate" => deflate = true,
            "--no-context-takeover" => no_context_takeover = true,
            "--idle-release" => match args.next().and_then(|ms| ms.parse::<u64>().ok()) {
                Some(ms) => idle_release = Some(Duration::from_millis(ms)),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::FAILURE;
                }
            },
            "--tls" => {
                let (Some(cert), Some(key)) = (args.next(), args.next()) else {
                    eprintln!("{USAGE}");
                    return ExitCode::FAILURE;
                };
                match tls_security(&cert, &key) {
                    Ok(s) => security = s,
                    Err(e) => {
                        eprintln!("--tls: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(port) = port else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let deflate =
        (deflate || no_context_takeover || idle_release.is_some()).then_some(PermessageDeflate {
            server_enable: true,
            server_no_context_takeover: no_context_takeover,
            client_no_context_takeover: no_context_takeover,
            idle_release,
            ..PermessageDeflate::default()
        });
    let ctx = match IoContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("context: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpAcceptor::bind(&ctx, addr) {
        Ok(acceptor) => accept_loop(acceptor, deflate, security),
        Err(e) => {
            eprintln!("bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ctx.run();
    ExitCode::SUCCESS
}
