//! The opening handshake of websocket::Stream in both roles, over the in-memory transport
//! and over loopback TCP.

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream};
use rbeast::proto::close::CloseCode;
use rbeast::proto::handshake::{offered_subprotocols, AcceptDecision};
use rbeast::test::{self, fail_handler, fail_wait, success_handler, success_wait};
use rbeast::websocket::Stream;
use rbeast::Error;

mod common;
use common::FirstError;

type Ws = Stream<test::Stream>;

fn pair(ctx: &IoContext) -> (Ws, Ws) {
    let (a, b) = test::Stream::pair(ctx);
    (Stream::new(a), Stream::new(b))
}

#[test]
fn handshake_then_messages_both_ways() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    server.async_accept(success_wait());
    client.async_handshake("localhost:80", "/chat", success_wait());
    assert!(!client.is_open());
    ctx.run();
    assert!(client.is_open() && server.is_open());
    client.async_write(&b"hi"[..], success_handler());
    let buf = FlatBuffer::new();
    server.async_read(&buf, success_handler());
    ctx.run();
    assert_eq!(&*buf.data(), b"hi");
}

#[test]
fn handshake_survives_one_byte_transport_io() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    client.next_layer().read_size(1);
    client.next_layer().write_size(1);
    server.next_layer().read_size(1);
    server.next_layer().write_size(1);
    server.async_accept(success_wait());
    client.async_handshake("h", "/", success_wait());
    ctx.run();
    assert!(client.is_open() && server.is_open());
}

#[test]
fn frame_data_right_after_the_request_is_kept() {
    let ctx = IoContext::new().unwrap();
    let server = Stream::new(test::Stream::new(&ctx));
    let request = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let frame = [0x81, 0x82, 0, 0, 0, 0, b'o', b'k'];
    // Part of the request was read by the application; the rest, plus a frame, arrives later.
    server
        .next_layer()
        .append(&[&request.as_bytes()[10..], &frame].concat());
    server.async_accept_with_buffer(&request.as_bytes()[..10], success_wait());
    ctx.run();
    let out = String::from_utf8_lossy(&server.next_layer().take_output()).into_owned();
    assert!(
        out.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{out}"
    );
    assert!(out.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    let buf = FlatBuffer::new();
    server.async_read(&buf, success_handler());
    ctx.run();
    assert_eq!(&*buf.data(), b"ok");
}

#[test]
fn a_bad_request_gets_beasts_error_response_and_the_error() {
    let ctx = IoContext::new().unwrap();
    let server = Stream::new(test::Stream::new(&ctx));
    server
        .next_layer()
        .append(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    server.async_accept(fail_wait(Error::NoConnection));
    ctx.run();
    let out = String::from_utf8_lossy(&server.next_layer().take_output()).into_owned();
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(!server.is_open());
    server.async_read(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    ctx.run();
}

#[test]
fn end_of_stream_before_a_request_is_closed() {
    let ctx = IoContext::new().unwrap();
    let server = Stream::new(test::Stream::new(&ctx));
    server.next_layer().append(b"GET / HT");
    server.next_layer().close_remote();
    server.async_accept(fail_wait(Error::Closed));
    ctx.run();
}

#[test]
fn the_accept_hook_chooses_a_subprotocol_and_the_client_sees_it() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    server.set_accept_hook(|req| {
        if offered_subprotocols(req).contains(&"v2") {
            AcceptDecision::accept().with_subprotocol("v2")
        } else {
            AcceptDecision::reject(http::StatusCode::FORBIDDEN, "v2 only")
        }
    });
    client.set_subprotocols(vec!["v3".into(), "v2".into()]);
    server.async_accept(success_wait());
    client.async_handshake("h", "/", success_wait());
    ctx.run();
    assert_eq!(client.subprotocol().as_deref(), Some("v2"));
    assert_eq!(server.subprotocol().as_deref(), Some("v2"));
}

#[test]
fn a_rejection_reaches_the_client_with_its_body() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    server.set_accept_hook(|_| AcceptDecision::reject(http::StatusCode::FORBIDDEN, "go away"));
    server.async_accept(fail_wait(Error::Rejected));
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    client.async_handshake_response("h", "/", move |r, res| *g.borrow_mut() = Some((r, res)));
    ctx.run();
    let (r, res) = got.borrow_mut().take().unwrap();
    assert_eq!(r, Err(Error::UpgradeDeclined));
    let res = res.expect("the response is handed back");
    assert_eq!(res.status(), 403);
    assert_eq!(res.body(), b"go away");
}

#[test]
fn decorators_see_the_request_and_every_response() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    client.set_request_decorator(|req| {
        req.headers_mut()
            .insert("user-agent", "decorated".parse().unwrap());
    });
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    server.set_accept_hook(move |req| {
        *s.borrow_mut() = req.headers().get("user-agent").cloned();
        AcceptDecision::accept()
    });
    server.set_response_decorator(|res| {
        res.headers_mut()
            .insert("server", "test-server".parse().unwrap());
    });
    server.async_accept(success_wait());
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    client.async_handshake_response("h", "/", move |r, res| {
        r.unwrap();
        *g.borrow_mut() = res;
    });
    ctx.run();
    assert_eq!(seen.borrow().as_ref().unwrap(), "decorated");
    assert_eq!(
        got.borrow().as_ref().unwrap().headers()["server"],
        "test-server"
    );
}

#[test]
fn a_second_handshake_gets_already_started_and_operations_before_it_abort() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    client.async_write(&b"too early"[..], fail_handler(Error::OperationAborted));
    server.async_accept(success_wait());
    server.async_accept(fail_wait(Error::AlreadyStarted));
    client.async_handshake("h", "/", success_wait());
    ctx.run();
    client.async_handshake("h", "/", fail_wait(Error::OperationAborted));
    ctx.run();
}

#[test]
fn every_failure_point_of_a_whole_session_surfaces_as_the_injected_error() {
    let n = test::fail_loop(1000, |fc| {
        let ctx = IoContext::new().unwrap();
        let (client, server) = pair(&ctx);
        client.next_layer().set_fail_count(fc);
        client.next_layer().write_size(20);
        let first = FirstError::new(client.next_layer().clone());
        // Server: accept, echo one message, then read until the close.
        let s = server.clone();
        server.async_accept(move |r| {
            if r.is_err() {
                return;
            }
            let (s2, buf) = (s.clone(), FlatBuffer::new());
            let b = buf.clone();
            s.async_read(&buf, move |r, _| {
                if r.is_ok() {
                    s2.async_write(b.take(), |_, _| {});
                    s2.async_read(&b, |_, _| {});
                }
            });
        });
        let (c, f) = (client.clone(), first.clone());
        client.async_handshake("h", "/", move |r| {
            if !f.record(&r) {
                return;
            }
            let c2 = c.clone();
            c.async_write(&b"payload"[..], move |r, _| {
                if !f.record(&r) {
                    return;
                }
                let (c3, buf) = (c2.clone(), FlatBuffer::new());
                c2.async_read(&buf, move |r, _| {
                    if f.record(&r) {
                        c3.async_close(CloseCode::NORMAL, move |r| {
                            f.record(&r);
                        });
                    }
                });
            });
        });
        ctx.run();
        first.result()
    });
    assert!(n > 5);
}

#[test]
fn client_and_server_over_loopback_tcp() {
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    acceptor.async_accept(|r| {
        let ws = Stream::new(r.unwrap());
        let w = ws.clone();
        ws.async_accept(move |r| {
            r.unwrap();
            fn echo(ws: Stream<TcpStream>, buf: FlatBuffer) {
                let (w, b) = (ws.clone(), buf.clone());
                ws.async_read(&buf, move |r, _| {
                    if r.is_err() {
                        return; // Closed at the end
                    }
                    w.set_binary(w.got_binary());
                    let w2 = w.clone();
                    w.async_write(b.take(), move |r, _| {
                        if r.is_ok() {
                            echo(w2, b);
                        }
                    });
                });
            }
            echo(w, FlatBuffer::new());
        });
    });
    let sock = TcpStream::new(&ctx);
    let ws = Stream::new(sock.clone());
    let done = Rc::new(RefCell::new(Vec::new()));
    let d = done.clone();
    sock.async_connect(addr, move |r| {
        r.unwrap();
        let w = ws.clone();
        ws.async_handshake(&format!("127.0.0.1:{}", addr.port()), "/", move |r| {
            r.unwrap();
            w.set_binary(true);
            let sizes = [0usize, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20];
            fn send(ws: Stream<TcpStream>, sizes: Vec<usize>, done: Rc<RefCell<Vec<usize>>>) {
                let Some((&len, rest)) = sizes.split_first() else {
                    let keep = ws.clone();
                    ws.async_close(CloseCode::NORMAL, move |r| {
                        r.unwrap();
                        assert!(!keep.is_open());
                    });
                    return;
                };
                let rest = rest.to_vec();
                let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
                let expected = payload.clone();
                ws.async_write(bytes::Bytes::from(payload), |r, _| r.unwrap());
                let (w, buf) = (ws.clone(), FlatBuffer::new());
                let b = buf.clone();
                ws.async_read(&buf, move |r, n| {
                    r.unwrap();
                    assert_eq!(n, len);
                    assert!(*b.data() == expected[..]);
                    assert!(w.got_binary());
                    done.borrow_mut().push(len);
                    send(w, rest, done);
                });
            }
            send(w, sizes.to_vec(), d);
        });
    });
    ctx.run();
    assert_eq!(done.borrow().len(), 8);
}

#[test]
fn dropping_the_last_handle_aborts_pending_operations() {
    let ctx = IoContext::new().unwrap();
    let (client, server) = pair(&ctx);
    server.async_accept(success_wait());
    client.async_handshake("h", "/", success_wait());
    ctx.run();
    client.async_read(&FlatBuffer::new(), fail_handler(Error::OperationAborted));
    drop(client);
    ctx.run();
    // The server sees the transport go away.
    server.async_read(&FlatBuffer::new(), fail_handler(Error::Eof));
    ctx.run();
}
