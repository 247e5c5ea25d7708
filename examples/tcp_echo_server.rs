//! A TCP echo server on the reactor alone (the asio-level example).
//!
//! Usage: `tcp_echo_server <address> <port>`, for example `tcp_echo_server 127.0.0.1 8080`.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::Error;

/// Reads whatever arrives and writes it back, until the peer closes.
fn echo(sock: TcpStream, buffer: FlatBuffer) {
    let s = sock.clone();
    let b = buffer.clone();
    sock.async_read_some(&buffer, move |r, _| {
        if let Err(e) = r {
            if e != Error::Eof {
                eprintln!("read: {e}");
            }
            return;
        }
        let data = b.take();
        let s2 = s.clone();
        s.async_write(data, move |r, _| match r {
            Ok(()) => echo(s2, b),
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
                let _ = sock.set_nodelay(true);
                echo(sock, FlatBuffer::new());
            }
            Err(e) => eprintln!("accept: {e}"),
        }
        accept_loop(a);
    });
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("Usage: tcp_echo_server <address> <port>");
        eprintln!("Example: tcp_echo_server 127.0.0.1 8080");
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
    println!(
        "echoing on {}",
        acceptor
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    accept_loop(acceptor);
    ctx.run();
    ExitCode::SUCCESS
}
