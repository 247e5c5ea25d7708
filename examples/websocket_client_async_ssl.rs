//! WebSocket SSL client, asynchronous (Beast's example client/async-ssl): resolve, connect,
//! TLS handshake, WebSocket handshake, send one message, read the reply, print it, close
//! (the closing handshake, then the TLS shutdown).
//!
//! Usage: `websocket_client_async_ssl <host> <port> <text> [ca.pem]`, for example
//! `websocket_client_async_ssl echo.example.com 443 "Hello, world!"`. The server's
//! certificate is verified against the platform's root certificates, or against the
//! certificates of `ca.pem` when given (a private CA, or a self-signed server certificate).

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use rbeast::net::{FlatBuffer, IoContext, Resolver, SteadyTimer, TcpStream};
use rbeast::proto::close::CloseCode;
use rbeast::tls::{self, HandshakeType};
use rbeast::websocket::{Stream, Timeout};
use rbeast::{Error, Role};

/// How long resolving and connecting may take, as Beast's example sets on its tcp_stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the session prints and how it ended.
type Outcome = Rc<RefCell<Result<String, String>>>;

type Wss = Stream<tls::Stream<TcpStream>>;

fn failed(outcome: &Outcome, what: &str, e: Error) {
    *outcome.borrow_mut() = Err(format!("{what}: {e}"));
}

/// The WebSocket part, once the TLS handshake is done: handshake, write, read, close.
fn talk(ws: Wss, host: String, port: u16, text: String, outcome: Outcome) {
    // Set suggested timeout settings for the websocket.
    ws.set_timeout(Timeout::suggested(Role::Client));
    // Set a decorator to change the User-Agent of the handshake.
    ws.set_request_decorator(|req| {
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("rbeast websocket-client-async-ssl"),
        );
    });
    // Host is sent with the port, as the examples of Beast do.
    let host_port = format!("{host}:{port}");
    let w = ws.clone();
    ws.async_handshake(&host_port, "/", move |r| {
        if let Err(e) = r {
            return failed(&outcome, "handshake", e);
        }
        let w2 = w.clone();
        w.async_write(bytes::Bytes::from(text), move |r, _| {
            if let Err(e) = r {
                return failed(&outcome, "write", e);
            }
            let (w3, buffer) = (w2.clone(), FlatBuffer::new());
            let b = buffer.clone();
            w2.async_read(&buffer, move |r, _| {
                if let Err(e) = r {
                    return failed(&outcome, "read", e);
                }
                let keep = w3.clone();
                w3.async_close(CloseCode::NORMAL, move |r| {
                    drop(keep);
                    match r {
                        // The connection is closed gracefully; print the message.
                        Ok(()) => *outcome.borrow_mut() = Ok(b.to_string_lossy()),
                        Err(e) => failed(&outcome, "close", e),
                    }
                });
            });
        });
    });
}

fn run(
    ctx: &IoContext,
    tls_ctx: &tls::Context,
    host: String,
    port: u16,
    text: String,
    outcome: Outcome,
) {
    let resolver = Resolver::new(ctx);
    let sock = TcpStream::new(ctx);
    // Bound resolving and connecting with a timer that closes the socket.
    let timer = Rc::new(SteadyTimer::new(ctx));
    timer.expires_after(CONNECT_TIMEOUT);
    let s = sock.clone();
    timer.async_wait(move |r| {
        if r.is_ok() {
            s.close(); // the pending connect completes with OperationAborted
        }
    });
    let ws = Stream::new(tls::Stream::new(sock.clone(), tls_ctx));
    // Set SNI and the name the certificate must carry.
    if let Err(e) = ws.next_layer().set_server_name(&host) {
        return failed(&outcome, "server name", e);
    }
    let lookup = host.clone();
    resolver.async_resolve(&lookup, port, move |r| {
        let addrs = match r {
            Ok(addrs) => addrs,
            Err(e) => return failed(&outcome, "resolve", e),
        };
        sock.async_connect_any(addrs, move |r| {
            timer.cancel();
            if let Err(e) = r {
                return failed(&outcome, "connect", e);
            }
            // Perform the TLS handshake.
            let w = ws.clone();
            ws.next_layer()
                .async_handshake(HandshakeType::Client, move |r| match r {
                    Ok(()) => talk(w, host, port, text, outcome),
                    Err(e) => failed(&outcome, "ssl handshake", e),
                });
        });
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 && args.len() != 5 {
        eprintln!("Usage: websocket_client_async_ssl <host> <port> <text> [ca.pem]");
        eprintln!(
            "Example:\n    websocket_client_async_ssl echo.example.com 443 \"Hello, world!\""
        );
        return ExitCode::FAILURE;
    }
    let Ok(port) = args[2].parse::<u16>() else {
        eprintln!("invalid port");
        return ExitCode::FAILURE;
    };
    // The root certificates to verify the server against.
    let config = match args.get(4) {
        Some(ca) => tls::client_config_from_ca_pem_file(ca),
        None => tls::client_config_native_roots(),
    };
    let tls_ctx = match config {
        Ok(config) => tls::Context::client(config),
        Err(e) => {
            eprintln!("certificates: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = match IoContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("context: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: Outcome = Rc::new(RefCell::new(Err("did not finish".into())));
    run(
        &ctx,
        &tls_ctx,
        args[1].clone(),
        port,
        args[3].clone(),
        outcome.clone(),
    );
    ctx.run();
    let result = outcome.borrow().clone();
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
