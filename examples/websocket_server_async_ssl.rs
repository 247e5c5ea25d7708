//! WebSocket SSL echo server, asynchronous (Beast's example server/async-ssl): `wss://`
//! with rustls.
//!
//! Usage: `websocket_server_async_ssl <address> <port> <threads> <cert.pem> <key.pem>`, for
//! example `websocket_server_async_ssl 0.0.0.0 8443 1 cert.pem key.pem`. The certificate
//! file holds the chain (leaf first), the key file the private key, both PEM.
//!
//! With more than one thread, each thread runs its own context with its own listener on the
//! same port (`SO_REUSEPORT`): the kernel spreads connections over them.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use rbeast::net::{AcceptorOptions, ContextPool, FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::tls::{self, HandshakeType};
use rbeast::websocket::{Stream, Timeout};
use rbeast::{Error, Role};

type Wss = Stream<tls::Stream<TcpStream>>;

/// Reports a failure.
fn fail(e: &Error, what: &str) {
    eprintln!("{what}: {e}");
}

/// Echoes every message received on one WebSocket connection.
struct Session {
    ws: Wss,
    buffer: FlatBuffer,
}

impl Session {
    fn run(sock: TcpStream, tls_ctx: &tls::Context) {
        let _ = sock.set_nodelay(true);
        let ws = Stream::new(tls::Stream::new(sock, tls_ctx));
        let timeout = Timeout::suggested(Role::Server);
        // The TLS handshake is bounded like the WebSocket one.
        ws.next_layer()
            .set_handshake_timeout(timeout.handshake_timeout);
        let session = Session {
            ws: ws.clone(),
            buffer: FlatBuffer::new(),
        };
        // Perform the TLS handshake.
        ws.next_layer()
            .async_handshake(HandshakeType::Server, move |r| match r {
                Ok(()) => session.on_handshake(timeout),
                Err(e) => fail(&e, "handshake"),
            });
    }

    fn on_handshake(self, timeout: Timeout) {
        // Set suggested timeout settings for the websocket.
        self.ws.set_timeout(timeout);
        // Set a decorator to change the Server of the handshake.
        self.ws.set_response_decorator(|res| {
            res.headers_mut().insert(
                http::header::SERVER,
                http::HeaderValue::from_static("rbeast websocket-server-async-ssl"),
            );
        });
        // Accept the websocket handshake.
        let ws = self.ws.clone();
        ws.async_accept(move |r| match r {
            Ok(()) => self.do_read(),
            Err(e) => fail(&e, "accept"),
        });
    }

    fn do_read(self) {
        let (ws, buffer) = (self.ws.clone(), self.buffer.clone());
        // Read a message into our buffer.
        ws.async_read(&buffer, move |r, _| self.on_read(r));
    }

    fn on_read(self, r: Result<(), Error>) {
        match r {
            // This indicates that the session was closed.
            Err(Error::Closed) => {}
            Err(e) => fail(&e, "read"),
            Ok(()) => {
                // Echo the message, as text or binary as it was received.
                self.ws.set_binary(self.ws.got_binary());
                let message = self.buffer.take();
                let ws = self.ws.clone();
                ws.async_write(message, move |r, _| match r {
                    Ok(()) => self.do_read(),
                    Err(e) => fail(&e, "write"),
                });
            }
        }
    }
}

/// Accepts incoming connections and launches the sessions.
fn do_accept(acceptor: TcpAcceptor, tls_ctx: tls::Context) {
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        match r {
            Ok(sock) => Session::run(sock, &tls_ctx),
            Err(e) => fail(&e, "accept"),
        }
        do_accept(a, tls_ctx);
    });
}

/// Binds a listener on `ctx` and starts accepting.
fn listen(
    ctx: &IoContext,
    endpoint: SocketAddr,
    reuse_port: bool,
    tls_ctx: tls::Context,
) -> Result<(), Error> {
    let options = AcceptorOptions {
        reuse_port,
        ..AcceptorOptions::default()
    };
    let acceptor = TcpAcceptor::bind_with(ctx, endpoint, options)?;
    do_accept(acceptor, tls_ctx);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!(
            "Usage: websocket_server_async_ssl <address> <port> <threads> <cert.pem> <key.pem>"
        );
        eprintln!("Example:\n    websocket_server_async_ssl 0.0.0.0 8443 1 cert.pem key.pem");
        return ExitCode::FAILURE;
    }
    let (Ok(address), Ok(port), Ok(threads)) = (
        args[1].parse::<IpAddr>(),
        args[2].parse::<u16>(),
        args[3].parse::<usize>(),
    ) else {
        eprintln!("invalid address, port or thread count");
        return ExitCode::FAILURE;
    };
    // The server's certificate chain and private key (Beast's example loads them into the
    // ssl::context the same way).
    let tls_ctx = match tls::server_config_from_pem_files(&args[4], &args[5]) {
        Ok(config) => tls::Context::server(config),
        Err(e) => {
            fail(&e, "certificate");
            return ExitCode::FAILURE;
        }
    };
    let endpoint = SocketAddr::new(address, port);
    let threads = threads.max(1);
    if threads == 1 {
        let ctx = match IoContext::new() {
            Ok(ctx) => ctx,
            Err(e) => {
                eprintln!("context: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = listen(&ctx, endpoint, false, tls_ctx) {
            fail(&e, "listen");
            return ExitCode::FAILURE;
        }
        ctx.run();
        return ExitCode::SUCCESS;
    }
    // One context per thread, each with its own listener on the same port.
    let pool = ContextPool::new(threads, move |ctx, _index| {
        if let Err(e) = listen(ctx, endpoint, true, tls_ctx.clone()) {
            fail(&e, "listen");
        }
    });
    match pool.map(|p| p.join()) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
