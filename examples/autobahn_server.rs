//! A WebSocket echo server tuned for the Autobahn|Testsuite (Beast's `server/fast`):
//! automatic fragmentation off, messages up to 64 MiB, each message echoed with its own
//! opcode. One context on one thread.
//!
//! Usage: `autobahn_server <address> <port>`, for example `autobahn_server 127.0.0.1 9001`,
//! then `wstest -m fuzzingclient` against `ws://127.0.0.1:9001` (see `scripts/autobahn.sh`).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::websocket::Stream;
use rbeast::Error;

type Ws = Stream<TcpStream>;

/// Applies the options the suite calls for, before the handshake.
fn tune(ws: &Ws) {
    ws.set_auto_fragment(false);
    ws.set_read_message_max(64 * 1024 * 1024);
    // permessage-deflate in the server role, with compression level 3 as Beast's
    // server/fast; every window size the client offers is accepted.
    let pmd = PermessageDeflate {
        server_enable: true,
        comp_level: 3,
        ..PermessageDeflate::default()
    };
    if let Err(e) = ws.set_permessage_deflate(pmd) {
        eprintln!("permessage-deflate: {e}");
    }
}

/// Reads one message and writes it back with the same opcode, until the connection ends.
fn echo(ws: Ws, buffer: FlatBuffer) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, _| {
        match r {
            Ok(()) => {}
            // The peer closed and the closing handshake completed: the normal end.
            Err(Error::Closed) => return,
            // Protocol violations are expected from the suite; the stream already sent
            // the close code and closed the connection.
            Err(e) => {
                eprintln!("read: {e}");
                return;
            }
        }
        w.set_binary(w.got_binary());
        let w2 = w.clone();
        w.async_write(b.take(), move |r, _| match r {
            Ok(()) => echo(w2, b),
            Err(e) => eprintln!("write: {e}"),
        });
    });
}

/// Accepts connections forever, starting an echo session for each.
fn accept_loop(acceptor: TcpAcceptor) {
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        match r {
            Ok(sock) => {
                if let Err(e) = sock.set_nodelay(true) {
                    eprintln!("nodelay: {e}");
                }
                let ws = Stream::new(sock);
                tune(&ws);
                let w = ws.clone();
                ws.async_accept(move |r| match r {
                    Ok(()) => echo(w, FlatBuffer::new()),
                    Err(e) => eprintln!("accept (handshake): {e}"),
                });
            }
            Err(e) => eprintln!("accept: {e}"),
        }
        accept_loop(a);
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("Usage: autobahn_server <address> <port>");
        eprintln!("Example: autobahn_server 127.0.0.1 9001");
        return ExitCode::FAILURE;
    }
    let (Ok(ip), Ok(port)) = (args[1].parse::<IpAddr>(), args[2].parse::<u16>()) else {
        eprintln!("invalid address or port");
        return ExitCode::FAILURE;
    };
    let ctx = match IoContext::new() {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("context: {e}");
            return ExitCode::FAILURE;
        }
    };
    let acceptor = match TcpAcceptor::bind(&ctx, SocketAddr::new(ip, port)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bind: {e}");
            return ExitCode::FAILURE;
        }
    };
    match acceptor.local_addr() {
        Ok(addr) => println!("autobahn echo server on ws://{addr}"),
        Err(e) => eprintln!("local address: {e}"),
    }
    accept_loop(acceptor);
    ctx.run();
    ExitCode::SUCCESS
}
