//! WebSocket echo server, tuned for speed and for the Autobahn|Testsuite (Beast's example
//! server/fast).
//!
//! Usage: `websocket_server_fast <address> <port> <threads>`, for example
//! `websocket_server_fast 0.0.0.0 8080 1`, then `wstest -m fuzzingclient` against
//! `ws://127.0.0.1:8080` (`scripts/autobahn.sh` does this on a free port).
//!
//! Beast's server/fast runs a synchronous, an asynchronous and a coroutine server on three
//! consecutive ports; rbeast has only the asynchronous kind, on `<port>`. With more than one
//! thread, each thread runs its own context with its own listener on the same port
//! (`SO_REUSEPORT`). Port 0 lets the system choose a free port (with one thread only, as
//! each listener would get a different one). The first line printed is
//! `websocket_server_fast listening on ws://<address>:<port>`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use rbeast::net::{AcceptorOptions, ContextPool, FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::websocket::{Stream, Timeout};
use rbeast::{Error, Role};

/// Reports a failure.
fn fail(e: &Error, what: &str) {
    eprintln!("{what}: {e}");
}

/// Adjusts the settings of a stream before its handshake.
fn setup_stream(ws: &Stream<TcpStream>) -> Result<(), Error> {
    // These values are tuned for Autobahn|Testsuite, and should also be generally helpful
    // for increased performance: permessage-deflate in both roles at compression level 3
    // (every window size a client offers is accepted).
    let pmd = PermessageDeflate {
        client_enable: true,
        server_enable: true,
        comp_level: 3,
        ..PermessageDeflate::default()
    };
    ws.set_permessage_deflate(pmd)?;
    ws.set_auto_fragment(false);
    // Autobahn|Testsuite needs this.
    ws.set_read_message_max(64 * 1024 * 1024);
    Ok(())
}

/// Echoes every message received on one WebSocket connection.
struct Session {
    ws: Stream<TcpStream>,
    buffer: FlatBuffer,
}

impl Session {
    fn run(sock: TcpStream) {
        if let Err(e) = sock.set_nodelay(true) {
            fail(&e.into(), "set_nodelay");
        }
        let ws = Stream::new(sock);
        if let Err(e) = setup_stream(&ws) {
            return fail(&e, "setup");
        }
        // Set suggested timeout settings for the websocket.
        ws.set_timeout(Timeout::suggested(Role::Server));
        // Set a decorator to change the Server of the handshake.
        ws.set_response_decorator(|res| {
            res.headers_mut().insert(
                http::header::SERVER,
                http::HeaderValue::from_static("rbeast websocket-server-fast"),
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
            // A protocol violation (the suite sends many on purpose) has already been
            // answered with its close code and the connection torn down.
            Err(e) => fail(&e, "read"),
            Ok(()) => {
                // Echo the message with the opcode it was received with.
                self.ws.set_text(self.ws.got_text());
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
        // Accept another connection.
        do_accept(a);
    });
}

/// Binds a listener on `ctx`, prints its address (the first listener only) and starts
/// accepting.
fn listen(ctx: &IoContext, endpoint: SocketAddr, reuse_port: bool, first: bool) -> bool {
    let options = AcceptorOptions {
        reuse_port,
        ..AcceptorOptions::default()
    };
    let acceptor = match TcpAcceptor::bind_with(ctx, endpoint, options) {
        Ok(a) => a,
        Err(e) => {
            fail(&e.into(), "listen");
            return false;
        }
    };
    if first {
        match acceptor.local_addr() {
            Ok(addr) => println!("websocket_server_fast listening on ws://{addr}"),
            Err(e) => fail(&e.into(), "local address"),
        }
    }
    do_accept(acceptor);
    true
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("Usage: websocket_server_fast <address> <port> <threads>");
        eprintln!("Example:\n    websocket_server_fast 0.0.0.0 8080 1");
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
                fail(&e.into(), "context");
                return ExitCode::FAILURE;
            }
        };
        if !listen(&ctx, endpoint, false, true) {
            return ExitCode::FAILURE;
        }
        ctx.run();
        return ExitCode::SUCCESS;
    }
    if port == 0 {
        eprintln!("port 0 takes one thread: each listener would get a port of its own");
        return ExitCode::FAILURE;
    }
    // One context per thread, each with its own listener on the same port.
    let pool = ContextPool::new(threads, move |ctx, index| {
        if !listen(ctx, endpoint, true, index == 0) {
            // Without its listener this context has no work and its thread ends; the
            // others keep serving.
            eprintln!("thread {index}: not listening");
        }
    });
    match pool {
        Ok(pool) => match pool.join() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        Err(e) => {
            fail(&e.into(), "threads");
            ExitCode::FAILURE
        }
    }
}
