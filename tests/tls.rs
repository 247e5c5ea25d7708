//! wss: websocket::Stream over tls::Stream. Our client against our server over loopback
//! TCP (every message size, fragmented, compressed, pings, the close handshake with the
//! TLS shutdown), the fail-count loop over the TLS transport on test::Stream, and hostile
//! or broken peers: garbage instead of a ClientHello, a stalled handshake, a connection cut
//! in the middle of a record, an untrusted certificate.
#![cfg(feature = "tls")]

mod common;

use std::cell::{Cell, RefCell};
use std::io::{IoSlice, Read, Write};
use std::rc::Rc;
use std::time::Duration;

use common::{random, Captured, FirstError};
use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream, Transport};
use rbeast::proto::close::CloseCode;
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::test::{self, fail_handler, fail_wait, success_handler, success_wait};
use rbeast::tls::{self, HandshakeType};
use rbeast::websocket::{self, FrameType};
use rbeast::{ArgumentError, Error, TlsError, TlsErrorKind};

type Wss = websocket::Stream<tls::Stream<TcpStream>>;
type MemWss = websocket::Stream<tls::Stream<test::Stream>>;

/// A throwaway self-signed certificate for "localhost", and the two contexts using it.
struct Pki {
    server: tls::Context,
    client: tls::Context,
}

fn pki() -> Pki {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = tls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let server = tls::server_config(vec![cert.der().clone()], der).unwrap();
    let mut roots = tls::rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    Pki {
        server: tls::Context::server(server),
        client: tls::Context::client(tls::client_config(roots).unwrap()),
    }
}

fn tls_error(kind: TlsErrorKind) -> Error {
    Error::Tls(TlsError::new(kind, ""))
}

// ------------------------------------------------------------------ loopback harness

/// Echoes every message until the read fails; records that error.
fn echo<T: Transport>(ws: websocket::Stream<T>, buf: FlatBuffer, end: Captured<Error>) {
    let (w, b) = (ws.clone(), buf.clone());
    ws.async_read(&buf, move |r, _| {
        if let Err(e) = r {
            end.set(e);
            return;
        }
        w.set_binary(w.got_binary());
        let w2 = w.clone();
        w.async_write(b.take(), move |r, _| {
            if r.is_ok() {
                echo(w2, b, end);
            }
        });
    });
}

/// Accepts one wss connection and echoes on it; the result holds the error that ended
/// the echo (`Closed` after a clean close).
fn serve_one(
    acceptor: &TcpAcceptor,
    context: tls::Context,
    setup: impl FnOnce(&Wss) + 'static,
) -> Captured<Error> {
    let end = Captured::new();
    let e = end.clone();
    acceptor.async_accept(move |sock| {
        let ws = websocket::Stream::new(tls::Stream::new(sock.unwrap(), &context));
        setup(&ws);
        let w = ws.clone();
        ws.next_layer()
            .async_handshake(HandshakeType::Server, move |r| {
                r.unwrap();
                let w2 = w.clone();
                w.async_accept(move |r| {
                    r.unwrap();
                    echo(w2, FlatBuffer::new(), e);
                });
            });
    });
    end
}

/// Connects, runs both handshakes, and hands the open stream to `then`.
fn connect(
    ctx: &IoContext,
    addr: std::net::SocketAddr,
    context: &tls::Context,
    setup: impl FnOnce(&Wss),
    then: impl FnOnce(Wss) + 'static,
) {
    let ws = websocket::Stream::new(tls::Stream::new(TcpStream::new(ctx), context));
    setup(&ws);
    let w = ws.clone();
    ws.next_layer().next_layer().async_connect(addr, move |r| {
        r.unwrap();
        w.next_layer().set_server_name("localhost").unwrap();
        let w2 = w.clone();
        w.next_layer()
            .async_handshake(HandshakeType::Client, move |r| {
                r.unwrap();
                let w3 = w2.clone();
                w2.async_handshake("localhost", "/", move |r| {
                    r.unwrap();
                    then(w3);
                });
            });
    });
}

/// Sends each message, checks its echo, then closes; records the close's result.
fn send_all(ws: Wss, mut messages: Vec<Vec<u8>>, closed: Captured<Result<(), Error>>) {
    let Some(message) = messages.pop() else {
        let keep = ws.clone(); // a stream dropped while closing aborts the close
        ws.async_close(CloseCode::NORMAL, move |r| {
            closed.set(r);
            drop(keep);
        });
        return;
    };
    ws.set_binary(true);
    let w = ws.clone();
    let expected = message.clone();
    ws.async_write(bytes::Bytes::from(message), move |r, _| {
        r.unwrap();
        let buf = FlatBuffer::new();
        let b = buf.clone();
        w.clone().async_read(&buf, move |r, n| {
            r.unwrap();
            assert_eq!(n, expected.len());
            assert!(*b.data() == expected[..], "echo of {} bytes differs", n);
            send_all(w, messages, closed);
        });
    });
}

/// Runs an echo session of `messages` between our client and our server over loopback.
fn loopback_session(
    messages: Vec<Vec<u8>>,
    server_setup: impl FnOnce(&Wss) + 'static,
    client_setup: impl FnOnce(&Wss),
) {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let end = serve_one(&acceptor, keys.server, server_setup);
    let closed = Captured::new();
    let c = closed.clone();
    connect(&ctx, addr, &keys.client, client_setup, move |ws| {
        send_all(ws, messages, c)
    });
    ctx.run();
    // Both sides saw the close_notify exchange: a truncation would surface here.
    assert_eq!(closed.take(), Some(Ok(())), "client close");
    assert_eq!(end.take(), Some(Error::Closed), "server read");
}

#[test]
fn wss_echo_of_every_message_size_over_loopback() {
    let sizes = [
        0usize,
        1,
        125,
        126,
        127,
        16 * 1024 - 1,
        16 * 1024,
        16 * 1024 + 1,
        65_535,
        65_536,
        65_537,
        1 << 20,
        16 << 20,
    ];
    let messages = sizes
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &n)| random(n, i as u64 + 1))
        .collect();
    loopback_session(
        messages,
        |ws| ws.set_read_message_max(32 << 20),
        |ws| ws.set_read_message_max(32 << 20),
    );
}

#[test]
fn wss_fragmented_compressed_messages_and_pings() {
    let server_pmd = PermessageDeflate {
        server_enable: true,
        ..Default::default()
    };
    let client_pmd = PermessageDeflate {
        client_enable: true,
        ..Default::default()
    };
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog "
        .iter()
        .cycle()
        .take(300_000)
        .copied()
        .collect();
    let messages = vec![text.clone(), random(100_000, 7), text[..1000].to_vec()];
    let pongs = Rc::new(Cell::new(0));
    let p = pongs.clone();
    loopback_session(
        messages,
        move |ws| {
            ws.set_permessage_deflate(server_pmd).unwrap();
        },
        move |ws| {
            ws.set_permessage_deflate(client_pmd).unwrap();
            // Small frames: every message leaves in many fragments.
            ws.set_write_buffer_bytes(1000).unwrap();
            ws.set_control_callback(move |kind, _| {
                if kind == FrameType::Pong {
                    p.set(p.get() + 1);
                }
            });
        },
    );
    let _ = pongs;
}

#[test]
fn wss_small_session() {
    loopback_session(vec![b"hello".to_vec()], |_| {}, |_| {});
}

#[test]
fn wss_pings_are_answered_between_messages() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let end = serve_one(&acceptor, keys.server, |_| {});
    let pongs = Rc::new(Cell::new(0));
    let closed = Captured::new();
    let (p, c) = (pongs.clone(), closed.clone());
    connect(
        &ctx,
        addr,
        &keys.client,
        move |ws| {
            ws.set_control_callback(move |kind, payload| {
                assert_eq!(kind, FrameType::Pong);
                assert_eq!(payload, b"are you there");
                p.set(p.get() + 1);
            })
        },
        move |ws| {
            ws.async_ping(b"are you there", success_wait());
            // The pong arrives while this read waits for the echo.
            send_all(ws, vec![b"after the ping".to_vec()], c);
        },
    );
    ctx.run();
    assert_eq!(pongs.get(), 1);
    assert_eq!(closed.take(), Some(Ok(())));
    assert_eq!(end.take(), Some(Error::Closed));
}

#[test]
fn an_untrusted_certificate_fails_both_handshakes_with_named_errors() {
    let (keys, other) = (pki(), pki());
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let server_ctx = keys.server;
    acceptor.async_accept(move |sock| {
        let s = tls::Stream::new(sock.unwrap(), &server_ctx);
        let keep = s.clone();
        s.async_handshake(HandshakeType::Server, move |r| {
            assert_eq!(r, Err(tls_error(TlsErrorKind::AlertReceived)));
            drop(keep);
        });
    });
    // The client trusts another certificate.
    let s = tls::Stream::new(TcpStream::new(&ctx), &other.client);
    let s2 = s.clone();
    s.next_layer().async_connect(addr, move |r| {
        r.unwrap();
        s2.set_server_name("localhost").unwrap();
        let keep = s2.clone();
        s2.async_handshake(HandshakeType::Client, move |r| {
            assert_eq!(r, Err(tls_error(TlsErrorKind::BadCertificate)));
            drop(keep);
        });
    });
    ctx.run();
}

#[test]
fn garbage_instead_of_a_client_hello_fails_the_handshake_and_sends_an_alert() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let server_ctx = keys.server;
    let failed = Rc::new(Cell::new(false));
    let f = failed.clone();
    acceptor.async_accept(move |sock| {
        let s = tls::Stream::new(sock.unwrap(), &server_ctx);
        let keep = s.clone();
        s.async_handshake(HandshakeType::Server, move |r| {
            assert_eq!(r, Err(tls_error(TlsErrorKind::InvalidMessage)));
            f.set(true);
            keep.close();
        });
    });
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        answer
    });
    ctx.run();
    let answer = peer.join().unwrap();
    assert!(failed.get());
    // A TLS alert record (content type 21), then the end of the connection.
    assert_eq!(answer.first(), Some(&21), "got {answer:?}");
}

// ------------------------------------------------------------------ in memory

/// A client and a server TLS stream over a connected test::Stream pair.
fn mem_pair(ctx: &IoContext, keys: &Pki) -> (tls::Stream<test::Stream>, tls::Stream<test::Stream>) {
    let (a, b) = test::Stream::pair(ctx);
    let client = tls::Stream::new(a, &keys.client);
    client.set_server_name("localhost").unwrap();
    (client, tls::Stream::new(b, &keys.server))
}

/// As `mem_pair`, after both handshakes.
fn mem_pair_open(
    ctx: &IoContext,
    keys: &Pki,
) -> (tls::Stream<test::Stream>, tls::Stream<test::Stream>) {
    let (client, server) = mem_pair(ctx, keys);
    server.async_handshake(HandshakeType::Server, success_wait());
    client.async_handshake(HandshakeType::Client, success_wait());
    ctx.run();
    (client, server)
}

#[test]
fn the_handshake_handler_never_runs_inside_the_call_and_runs_once() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (client, server) = mem_pair(&ctx, &keys);
    let ran = Rc::new(Cell::new(0));
    let (r1, r2) = (ran.clone(), ran.clone());
    server.async_handshake(HandshakeType::Server, move |r| {
        r.unwrap();
        r1.set(r1.get() + 1);
    });
    client.async_handshake(HandshakeType::Client, move |r| {
        r.unwrap();
        r2.set(r2.get() + 1);
    });
    client.async_handshake(HandshakeType::Client, fail_wait(Error::AlreadyStarted));
    assert_eq!(ran.get(), 0);
    ctx.run();
    assert_eq!(ran.get(), 2);
    assert!(client.is_handshake_done() && server.is_handshake_done());
    assert!(client.protocol_version().is_some());
    // Once is enough.
    client.async_handshake(
        HandshakeType::Client,
        fail_wait(Error::InvalidArgument(ArgumentError::TlsHandshakeDone)),
    );
    ctx.run();
}

#[test]
fn handshakes_without_a_fitting_configuration_fail_with_config_errors() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (a, b) = test::Stream::pair(&ctx);
    // A server-only context cannot connect; a client handshake needs a server name.
    let s = tls::Stream::new(a, &keys.server);
    s.async_handshake(
        HandshakeType::Client,
        fail_wait(tls_error(TlsErrorKind::Config)),
    );
    let c = tls::Stream::new(b, &keys.client);
    c.async_handshake(
        HandshakeType::Client,
        fail_wait(tls_error(TlsErrorKind::Config)),
    );
    ctx.run();
}

#[test]
fn async_shutdown_exchanges_close_notify_both_ways() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (client, server) = mem_pair_open(&ctx, &keys);
    client.async_shutdown(success_wait());
    server.async_shutdown(success_wait());
    ctx.run();
    // The next layers stay open: the caller closes them.
    assert!(client.next_layer().is_open());
}

#[test]
fn async_shutdown_reports_a_peer_that_closes_without_close_notify() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (client, server) = mem_pair_open(&ctx, &keys);
    client.async_shutdown(fail_wait(Error::StreamTruncated));
    server.next_layer().close();
    ctx.run();
}

#[test]
fn close_aborts_a_pending_handshake_and_a_stalled_peer_times_out() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (client, server) = mem_pair(&ctx, &keys);
    // Nobody answers the client: close aborts it.
    client.async_handshake(HandshakeType::Client, fail_wait(Error::OperationAborted));
    client.close();
    ctx.run();
    assert!(!client.is_open());
    // A server whose peer sends half a ClientHello and stalls times out.
    let (a, b) = test::Stream::pair(&ctx);
    let stalled_client = tls::Stream::new(test::Stream::new(&ctx), &keys.client);
    stalled_client.set_server_name("localhost").unwrap();
    stalled_client.set_handshake_timeout(None);
    stalled_client.async_handshake(HandshakeType::Client, fail_wait(Error::OperationAborted));
    let hello = stalled_client.next_layer().take_output();
    assert!(hello.len() > 20);
    let server2 = tls::Stream::new(b, &keys.server);
    server2.set_handshake_timeout(Some(Duration::from_millis(50)));
    let (s2, sc) = (server2.clone(), stalled_client.clone());
    server2.async_handshake(HandshakeType::Server, move |r| {
        assert_eq!(r, Err(Error::Timeout));
        assert!(!s2.is_open(), "the timeout closed the next layer");
        sc.close();
    });
    a.async_write(hello.slice(..hello.len() / 2), success_handler());
    ctx.run();
    drop(server);
}

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn dropping_the_context_drops_a_parked_handshake_uninvoked_without_leaks() {
    let keys = pki();
    let dropped = Rc::new(Cell::new(false));
    {
        let ctx = IoContext::new().unwrap();
        let (client, _server) = mem_pair(&ctx, &keys);
        let ws: MemWss = websocket::Stream::new(client);
        let (me, flag) = (ws.clone(), DropFlag(dropped.clone()));
        // The handler captures the stream: a cycle that only the context can break.
        ws.next_layer()
            .async_handshake(HandshakeType::Client, move |_| {
                let _ = (&me, &flag);
                panic!("a parked handler must not run");
            });
        ctx.poll();
        drop(ws);
        assert!(!dropped.get(), "the cycle keeps the handler alive");
    }
    assert!(dropped.get(), "the context broke the cycle");
}

/// Moves the bytes each standalone end wrote to the other, until nothing moves.
fn shuttle(ctx: &IoContext, a: &test::Stream, b: &test::Stream) {
    loop {
        ctx.poll();
        let (to_b, to_a) = (a.take_output(), b.take_output());
        if to_a.is_empty() && to_b.is_empty() {
            return;
        }
        b.append(&to_b);
        a.append(&to_a);
    }
}

/// A client and a server TLS stream over two standalone test streams whose bytes the
/// test moves by hand (see `shuttle`), after both handshakes.
struct Wire {
    a: test::Stream,
    b: test::Stream,
    client: tls::Stream<test::Stream>,
    server: tls::Stream<test::Stream>,
}

fn wire(ctx: &IoContext, keys: &Pki) -> Wire {
    let (a, b) = (test::Stream::new(ctx), test::Stream::new(ctx));
    let client = tls::Stream::new(a.clone(), &keys.client);
    client.set_server_name("localhost").unwrap();
    let server = tls::Stream::new(b.clone(), &keys.server);
    client.async_handshake(HandshakeType::Client, success_wait());
    server.async_handshake(HandshakeType::Server, success_wait());
    shuttle(ctx, &a, &b);
    assert!(client.is_handshake_done() && server.is_handshake_done());
    Wire {
        a,
        b,
        client,
        server,
    }
}

/// WebSocket streams opened (without a handshake) over both ends of a wire.
fn open_websockets(wire: Wire) -> (test::Stream, test::Stream, MemWss, MemWss) {
    let (cws, sws): (MemWss, MemWss) = (
        websocket::Stream::new(wire.client),
        websocket::Stream::new(wire.server),
    );
    cws.open_unchecked(rbeast::Role::Client);
    sws.open_unchecked(rbeast::Role::Server);
    (wire.a, wire.b, cws, sws)
}

#[test]
fn a_connection_cut_in_the_middle_of_a_record_reads_as_stream_truncated() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (a, b, cws, sws) = open_websockets(wire(&ctx, &keys));
    cws.set_binary(true);
    cws.async_write(bytes::Bytes::from(random(50_000, 3)), success_handler());
    ctx.poll();
    let record = a.take_output();
    assert!(record.len() > 50_000);
    b.append(&record[..record.len() / 2]);
    b.close_remote();
    sws.async_read(&FlatBuffer::new(), fail_handler(Error::StreamTruncated));
    ctx.run();
    sws.async_read(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    ctx.run();
}

#[test]
fn corrupt_records_fail_with_a_tls_error_not_a_panic() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let Wire {
        a,
        b,
        mut client,
        mut server,
    } = wire(&ctx, &keys);
    client
        .write_vectored(&[IoSlice::new(b"secret "), IoSlice::new(b"message")])
        .unwrap();
    let mut record = a.take_output().to_vec();
    let last = record.len() - 1;
    record[last] ^= 1; // break the authentication tag
    b.append(&record);
    let mut buf = [0u8; 64];
    let e = Error::from(server.read(&mut buf).unwrap_err());
    assert_eq!(e, tls_error(TlsErrorKind::DecryptError));
    // The error is sticky, and the peer was told with an (encrypted) alert.
    assert_eq!(Error::from(server.read(&mut buf).unwrap_err()), e);
    assert!(!b.take_output().is_empty());
    // A record header announcing an oversized record.
    let Wire {
        b: d, mut server, ..
    } = wire(&ctx, &keys);
    d.append(&[23, 3, 3, 0xff, 0xff]);
    d.append(&vec![0u8; 70_000]);
    let e = Error::from(server.read(&mut buf).unwrap_err());
    assert!(matches!(e, Error::Tls(_)), "{e:?}");
}

/// Which end of a fail-loop session has the failing transport.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Faulty {
    Client,
    Server,
}

/// The server of the fail loop: echoes until the read ends; records every error but the
/// clean end (`Closed`), which goes to `end`.
fn recorded_echo(ws: MemWss, buf: FlatBuffer, f: FirstError, end: Captured<Error>) {
    let (w, b) = (ws.clone(), buf.clone());
    ws.async_read(&buf, move |r, _| {
        if let Err(e) = r {
            if e != Error::Closed {
                f.record(&Err(e.clone()));
            }
            end.set(e);
            return;
        }
        w.set_binary(w.got_binary());
        let w2 = w.clone();
        w.async_write(b.take(), move |r, _| {
            if f.record(&r) {
                recorded_echo(w2, b, f, end);
            }
        });
    });
}

/// The echo session of the fail loop: both handshakes, a message each way, the close,
/// with `fc` on the `faulty` end's transport. Returns that end's first error; the healthy
/// end may only see the faulty one going away.
fn mem_session(fc: test::FailCount, keys: &Pki, faulty: Faulty) -> Result<(), Error> {
    let ctx = IoContext::new().unwrap();
    let (a, b) = test::Stream::pair(&ctx);
    let bad = if faulty == Faulty::Client { &a } else { &b };
    bad.set_fail_count(fc.clone());
    bad.write_size(700);
    bad.read_size(900);
    let (client_first, server_first) = (FirstError::new(a.clone()), FirstError::new(b.clone()));
    let client: MemWss = websocket::Stream::new(tls::Stream::new(a, &keys.client));
    let server: MemWss = websocket::Stream::new(tls::Stream::new(b, &keys.server));
    client.next_layer().set_server_name("localhost").unwrap();
    let end = Captured::new();
    let (s, e, f) = (server.clone(), end.clone(), server_first.clone());
    server
        .next_layer()
        .async_handshake(HandshakeType::Server, move |r| {
            if !f.record(&r) {
                return;
            }
            let s2 = s.clone();
            s.async_accept(move |r| {
                if f.record(&r) {
                    recorded_echo(s2, FlatBuffer::new(), f, e);
                }
            });
        });
    let (c, f) = (client.clone(), client_first.clone());
    client
        .next_layer()
        .async_handshake(HandshakeType::Client, move |r| {
            if !f.record(&r) {
                return;
            }
            let c2 = c.clone();
            c.set_binary(true);
            c.async_handshake("localhost", "/", move |r| {
                if !f.record(&r) {
                    return;
                }
                let c3 = c2.clone();
                c2.async_write(bytes::Bytes::from(random(3000, 9)), move |r, _| {
                    if !f.record(&r) {
                        return;
                    }
                    let (c4, buf) = (c3.clone(), FlatBuffer::new());
                    let b = buf.clone();
                    c3.async_read(&buf, move |r, _| {
                        if f.record(&r) {
                            assert_eq!(*b.data(), random(3000, 9)[..]);
                            c4.async_close(CloseCode::NORMAL, move |r| {
                                f.record(&r);
                            });
                        }
                    });
                });
            });
        });
    ctx.run();
    let (mine, theirs) = match faulty {
        Faulty::Client => (client_first.result(), server_first.result()),
        Faulty::Server => (server_first.result(), client_first.result()),
    };
    match &mine {
        Ok(()) => {
            assert_eq!(theirs, Ok(()), "a clean run has no error at either end");
            assert_eq!(end.take(), Some(Error::Closed));
        }
        Err(_) => {
            assert!(fc.tripped());
            if let Err(t) = &theirs {
                let going_away = *t == Error::StreamTruncated
                    || *t == Error::Eof
                    || t.is_io(std::io::ErrorKind::ConnectionReset);
                assert!(going_away, "the healthy end saw {t:?}");
            }
        }
    }
    mine
}

#[test]
fn every_failure_point_of_a_wss_session_surfaces_as_the_injected_error() {
    let keys = pki();
    let n = test::fail_loop(2000, |fc| mem_session(fc, &keys, Faulty::Client));
    assert!(n > 10, "a wss session has many failure points ({n})");
}

#[test]
fn every_failure_point_of_a_wss_server_surfaces_as_the_injected_error() {
    let keys = pki();
    let n = test::fail_loop(2000, |fc| mem_session(fc, &keys, Faulty::Server));
    assert!(n > 10, "a wss server has many failure points ({n})");
}

/// The TLS records in `wire` bytes: (content type, length) of each.
fn records(mut wire: &[u8]) -> Vec<(u8, usize)> {
    let mut found = Vec::new();
    while wire.len() >= 5 {
        let len = u16::from_be_bytes([wire[3], wire[4]]) as usize;
        found.push((wire[0], len));
        wire = &wire[(5 + len).min(wire.len())..];
    }
    found
}

#[test]
fn frames_written_in_one_turn_leave_in_few_records() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let Wire { a, client, .. } = wire(&ctx, &keys);
    let ws: MemWss = websocket::Stream::new(client);
    ws.open_unchecked(rbeast::Role::Client);
    // 100 messages of 100 bytes, queued in one turn: about 10.6 KB of frames.
    let queue = websocket::WriteQueue::new(&ws, 1 << 20);
    for i in 0..100u64 {
        queue.send(
            bytes::Bytes::from(random(100, i + 1)),
            true,
            success_handler(),
        );
    }
    ctx.poll();
    let sent = records(&a.take_output());
    assert!(!sent.is_empty());
    assert!(
        sent.len() <= 2,
        "100 frames became {} records: {sent:?}",
        sent.len()
    );
    // A 40 KB message leaves in records of the largest size, not in small pieces.
    ws.async_write(bytes::Bytes::from(random(40_000, 5)), success_handler());
    ctx.poll();
    let sent = records(&a.take_output());
    assert!(sent.len() <= 4, "{sent:?}");
}

#[test]
fn plaintext_held_inside_the_tls_stream_stays_readable_without_a_new_event() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let (a, b, cws, sws) = open_websockets(wire(&ctx, &keys));
    let queue = websocket::WriteQueue::new(&cws, 1 << 20);
    let messages: Vec<Vec<u8>> = (0..3).map(|i| random(40_000, i + 20)).collect();
    for m in &messages {
        queue.send(bytes::Bytes::from(m.clone()), true, success_handler());
    }
    ctx.poll();
    // All three messages arrive at once: one readiness event for 120 KB, more than one
    // read of the WebSocket layer takes; the rest waits inside the TLS stream.
    b.append(&a.take_output());
    let got = Rc::new(RefCell::new(Vec::new()));
    fn read_n(ws: MemWss, left: usize, got: Rc<RefCell<Vec<Vec<u8>>>>) {
        if left == 0 {
            return;
        }
        let buf = FlatBuffer::new();
        let (w, b) = (ws.clone(), buf.clone());
        ws.async_read(&buf, move |r, _| {
            r.unwrap();
            got.borrow_mut().push(b.data().to_vec());
            read_n(w, left - 1, got);
        });
    }
    read_n(sws.clone(), 3, got.clone());
    ctx.run();
    assert_eq!(*got.borrow(), messages);
}

#[test]
fn a_tcp_peer_that_stalls_mid_handshake_times_out_and_is_disconnected() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    // A real ClientHello, of which the peer sends only the first half.
    let hello_maker = tls::Stream::new(test::Stream::new(&ctx), &keys.client);
    hello_maker.set_server_name("localhost").unwrap();
    hello_maker.async_handshake(HandshakeType::Client, fail_wait(Error::OperationAborted));
    let hello = hello_maker.next_layer().take_output();
    hello_maker.close();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let server_ctx = keys.server;
    let timed_out = Rc::new(Cell::new(false));
    let t = timed_out.clone();
    acceptor.async_accept(move |sock| {
        let s = tls::Stream::new(sock.unwrap(), &server_ctx);
        s.set_handshake_timeout(Some(Duration::from_millis(100)));
        let keep = s.clone();
        s.async_handshake(HandshakeType::Server, move |r| {
            assert_eq!(r, Err(Error::Timeout));
            assert!(!keep.is_open());
            t.set(true);
        });
    });
    let half = hello[..hello.len() / 2].to_vec();
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        // A safety net only: the server closes long before.
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&half).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map(|_| rest.len())
    });
    ctx.run();
    assert!(timed_out.get());
    // The server closed the connection: the peer reads end of stream, nothing else.
    assert_eq!(peer.join().unwrap().unwrap(), 0);
}

#[test]
fn records_larger_than_the_readers_buffer_come_out_whole_and_in_order_even_across_a_write() {
    let keys = pki();
    let ctx = IoContext::new().unwrap();
    let Wire {
        a,
        b,
        mut client,
        mut server,
    } = wire(&ctx, &keys);
    let sent = random(60_000, 7);
    let (first, second) = sent.split_at(25_000);
    assert_eq!(
        client.write_vectored(&[IoSlice::new(first)]).unwrap(),
        first.len()
    );
    assert_eq!(
        client.write_vectored(&[IoSlice::new(second)]).unwrap(),
        second.len()
    );
    b.append(&a.take_output());
    let mut got = Vec::new();
    let mut small = [0u8; 1000];
    let n = server.read(&mut small).unwrap();
    got.extend_from_slice(&small[..n]);
    // A write while decrypted and undecrypted records wait: they stay readable, in order.
    assert_eq!(server.write_vectored(&[IoSlice::new(b"reply")]).unwrap(), 5);
    assert!(server.readiness().is_readable());
    while got.len() < sent.len() {
        let n = server.read(&mut small).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&small[..n]);
    }
    assert_eq!(got, sent);
    assert_eq!(
        server.read(&mut small).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    a.append(&b.take_output());
    let mut reply = [0u8; 16];
    assert_eq!(client.read(&mut reply).unwrap(), 5);
    assert_eq!(&reply[..5], b"reply");
}

#[test]
fn a_record_trickled_in_small_pieces_comes_out_once_complete() {
    let ctx = IoContext::new().unwrap();
    let mut w = wire(&ctx, &pki());
    let sent = random(16_384, 9);
    w.client.write_vectored(&[IoSlice::new(&sent)]).unwrap();
    let wire_bytes = w.a.take_output();
    let mut buf = vec![0u8; 20_000];
    for chunk in wire_bytes.chunks(1000) {
        w.b.append(chunk);
        ctx.poll();
        match w.server.read(&mut buf) {
            Ok(n) => {
                assert_eq!(&buf[..n], &sent[..]);
                return;
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
        }
    }
    panic!("the record never came out");
}
