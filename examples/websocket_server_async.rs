//! WebSocket echo server, asynchronous (Beast's example server/async).
//!
//! Usage: `websocket_server_async <address> <port> <threads>`, for example
//! `websocket_server_async 0.0.0.0 8080 1`.
//!
//! With more than one thread, each thread runs its own context with its own listener on the
//! same port (`SO_REUSEPORT`): the kernel spreads connections over them.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use rbeast::net::{AcceptorOptions, ContextPool, FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::websocket::{Stream, Timeout};
use rbeast::{Error, Role};

/// Reports a failure.
fn fail(e: &Error, what: &str) {
    eprintln!("{what}: {e}");
}

/// Echoes every message received on one WebSocket connection.
struct Session {
    ws: Stream<TcpStream>,
    buffer: FlatBuffer,
}

impl Session {
    fn run(sock: TcpStream) {
        let _ = sock.set_nodelay(true);
        let ws = Stream::new(sock);
        // Set suggested timeout settings for the websocket.
        ws.set_timeout(Timeout::suggested(Role::Server));
        // Set a decorator to change the Server of the handshake.
        ws.set_response_decorator(|res| {
            res.headers_mut().insert(
                http::header::SERVER,
                http::HeaderValue::from_static("rbeast websocket-server-async"),
            );
        });
        let session = Session {
            ws: ws.clone(),
            buffer: FlatBuffer::new(),
        };
        // Accept the websocket handshake.
        ws.async_accept(move |r| match r {
            Ok(()) => session.do_read(),
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
fn do_accept(acceptor: TcpAcceptor) {
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        match r {
            Ok(sock) => Session::run(sock),
            Err(e) => fail(&e, "accept"),
        }
        do_accept(a);
    });
}

/// Binds a listener on `ctx` and starts accepting.
fn listen(ctx: &IoContext, endpoint: SocketAddr, reuse_port: bool) -> Result<(), Error> {
    let options = AcceptorOptions {
        reuse_port,
        ..AcceptorOptions::default()
    };
    let acceptor = TcpAcceptor::bind_with(ctx, endpoint, options)?;
    do_accept(acceptor);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("Usage: websocket_server_async <address> <port> <threads>");
        eprintln!("Example:\n    websocket_server_async 0.0.0.0 8080 1");
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
        if let Err(e) = listen(&ctx, endpoint, false) {
            fail(&e, "listen");
            return ExitCode::FAILURE;
        }
        ctx.run();
        return ExitCode::SUCCESS;
    }
    // One context per thread, each with its own listener on the same port.
    let pool = ContextPool::new(threads, move |ctx, _index| {
        if let Err(e) = listen(ctx, endpoint, true) {
            fail(&e, "listen");
        }
    });
    match pool.map(|p| p.join()) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
