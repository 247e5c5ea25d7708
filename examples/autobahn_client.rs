//! The client side of the Autobahn|Testsuite (`wstest -m fuzzingserver`): asks the suite
//! for the number of cases, runs each one as an echo peer, then asks it to write the
//! reports. One context on one thread; the cases run one after the other.
//!
//! Usage: `autobahn_client <host> <port> [agent]`, for example
//! `autobahn_client 127.0.0.1 9001 rbeast` (see `scripts/autobahn.sh`).

use std::cell::Cell;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;

use rbeast::net::{FlatBuffer, Handle, IoContext, Resolver, TcpStream};
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::websocket::Stream;
use rbeast::Error;

type Ws = Stream<TcpStream>;

/// What every step needs.
struct Client {
    handle: Handle,
    addrs: Vec<SocketAddr>,
    /// `host:port`, sent in `Host`.
    host: String,
    agent: String,
    /// Set when a step failed in a way the suite cannot see (connect, handshake, count).
    failed: Rc<Cell<bool>>,
}

impl Client {
    fn fail(&self, what: &str, e: &dyn std::fmt::Display) {
        eprintln!("{what}: {e}");
        self.failed.set(true);
    }
}

/// Connects, opens a WebSocket connection to `target` and hands the stream over.
fn open(c: &Rc<Client>, target: String, then: impl FnOnce(Ws) + 'static) {
    let sock = TcpStream::new(&c.handle);
    let (c2, s) = (c.clone(), sock.clone());
    sock.async_connect_any(c.addrs.clone(), move |r| {
        if let Err(e) = r {
            return c2.fail(&format!("connect for {target}"), &e);
        }
        if let Err(e) = s.set_nodelay(true) {
            eprintln!("nodelay: {e}");
        }
        let ws = Stream::new(s);
        // As the server example: no automatic fragmentation, messages up to 64 MiB, and
        // permessage-deflate offered (compression level 3).
        ws.set_auto_fragment(false);
        ws.set_read_message_max(64 * 1024 * 1024);
        let pmd = PermessageDeflate {
            client_enable: true,
            comp_level: 3,
            ..PermessageDeflate::default()
        };
        if let Err(e) = ws.set_permessage_deflate(pmd) {
            eprintln!("permessage-deflate: {e}");
        }
        let (w, host, path) = (ws.clone(), c2.host.clone(), target.clone());
        ws.async_handshake(&host, &path, move |r| match r {
            Ok(()) => then(w),
            Err(e) => c2.fail(&format!("handshake for {target}"), &e),
        });
    });
}

/// Echoes every message until the connection ends, then calls `done` with the error
/// that ended it (`None` for a completed closing handshake).
fn echo(ws: Ws, buffer: FlatBuffer, done: impl FnOnce(Option<Error>) + 'static) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, _| {
        match r {
            Ok(()) => {}
            // The closing handshake completed (pings were answered on the way).
            Err(Error::Closed) => return done(None),
            // The suite resets the socket (abortConnection) once it has our reply to its
            // close frame, so the teardown that follows a received close frame may end with
            // a reset instead of end of stream (Beast reports it the same way). The closing
            // handshake itself completed.
            Err(e) if e.is_io(ErrorKind::ConnectionReset) && w.reason().is_set() => {
                return done(None)
            }
            // A violation the case provoked on purpose, or the peer went away: the case
            // is over either way, and the suite judges it.
            Err(e) => return done(Some(e)),
        }
        w.set_binary(w.got_binary());
        let w2 = w.clone();
        w.async_write(b.take(), move |r, _| match r {
            Ok(()) => echo(w2, b, done),
            Err(e) => done(Some(e)),
        });
    });
}

/// Reads and ignores messages until the connection ends, then calls `done`.
fn drain(ws: Ws, done: impl FnOnce() + 'static) {
    let w = ws.clone();
    ws.async_read(&FlatBuffer::new(), move |r, _| match r {
        Ok(()) => drain(w, done),
        Err(Error::Closed) => done(),
        Err(e) => {
            eprintln!("read: {e}");
            done();
        }
    });
}

/// Runs cases `case..=count`, then asks for the reports.
fn run_case(c: Rc<Client>, case: usize, count: usize) {
    if case > count {
        let target = format!("/updateReports?agent={}", c.agent);
        return open(&c.clone(), target, move |ws| {
            drain(ws, move || println!("{count} cases run; reports updated"))
        });
    }
    let target = format!("/runCase?case={case}&agent={}", c.agent);
    let c2 = c.clone();
    open(&c, target, move |ws| {
        echo(ws, FlatBuffer::new(), move |e| {
            if let Some(e) = e {
                eprintln!("case {case}: {e}");
            }
            run_case(c2, case + 1, count)
        })
    });
}

/// Asks the suite how many cases it has, then runs them.
fn start(c: Rc<Client>) {
    open(&c.clone(), "/getCaseCount".into(), move |ws| {
        let buffer = FlatBuffer::new();
        let (w, b) = (ws.clone(), buffer.clone());
        ws.async_read(&buffer, move |r, _| {
            if let Err(e) = r {
                return c.fail("case count", &e);
            }
            let text = b.to_string_lossy();
            let Ok(count) = text.trim().parse::<usize>() else {
                return c.fail("case count", &format_args!("not a number: {text:?}"));
            };
            println!("{count} cases");
            // The suite closes this connection; complete the handshake, then run.
            drain(w, move || run_case(c, 1, count));
        });
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("Usage: autobahn_client <host> <port> [agent]");
        eprintln!("Example: autobahn_client 127.0.0.1 9001 rbeast");
        return ExitCode::FAILURE;
    }
    let Ok(port) = args[2].parse::<u16>() else {
        eprintln!("invalid port");
        return ExitCode::FAILURE;
    };
    let agent = args.get(3).cloned().unwrap_or_else(|| "rbeast".into());
    let ctx = match IoContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("context: {e}");
            return ExitCode::FAILURE;
        }
    };
    let failed = Rc::new(Cell::new(false));
    let (handle, host, f) = (ctx.handle().clone(), args[1].clone(), failed.clone());
    Resolver::new(&ctx).async_resolve(&args[1], port, move |r| match r {
        Ok(addrs) => {
            let c = Rc::new(Client {
                handle,
                addrs,
                host: format!("{host}:{port}"),
                agent,
                failed: f,
            });
            start(c);
        }
        Err(e) => {
            eprintln!("resolve {host}: {e}");
            f.set(true);
        }
    });
    ctx.run();
    if failed.get() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
