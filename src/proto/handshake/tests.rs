//! Handshake matrices: request and response checks in Beast's order, fed through the
//! parsers in pieces.

use super::*;
use crate::proto::deflate::{PermessageDeflate, PmdParams};
use crate::{ArgumentError, Error};
use http::{Request, StatusCode};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid request as lines, so tests can break single fields.
fn request_lines() -> Vec<String> {
    vec![
        "GET /chat HTTP/1.1".into(),
        "Host: server.example.com".into(),
        "Connection: Upgrade".into(),
        "Upgrade: websocket".into(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".into(),
    ]
}

fn join(lines: &[String]) -> Vec<u8> {
    let mut s = lines.join("\r\n");
    s.push_str("\r\n\r\n");
    s.into_bytes()
}

/// Feeds `bytes` cut at `cut` and returns the parsed request.
fn parse_request_cut(bytes: &[u8], cut: usize) -> RequestType {
    let mut p = RequestParser::new(ParserOptions::default());
    if let Some(done) = p.feed(&bytes[..cut]).unwrap() {
        assert_eq!(cut, bytes.len());
        return done.message;
    }
    let done = p.feed(&bytes[cut..]).unwrap().unwrap();
    assert_eq!(done.consumed, bytes.len() - cut);
    done.message
}

fn cuts(n: usize) -> [usize; 3] {
    [1, n / 2, n - 1]
}

/// The mutations that make each check fail, in Beast's order.
/// An error and the edit of a message's lines that makes the check report it.
type Breaker = (Error, fn(&mut Vec<String>));

fn request_breakers() -> Vec<Breaker> {
    fn set(lines: &mut Vec<String>, prefix: &str, to: Option<&str>) {
        lines.retain(|l| !l.starts_with(prefix));
        if let Some(t) = to {
            lines.push(t.to_string());
        }
    }
    vec![
        (Error::BadHttpVersion, |l| {
            l[0] = l[0].replace("HTTP/1.1", "HTTP/1.0")
        }),
        (Error::BadMethod, |l| l[0] = l[0].replace("GET", "POST")),
        (Error::NoHost, |l| set(l, "Host:", None)),
        (Error::NoConnection, |l| set(l, "Connection:", None)),
        (Error::NoConnectionUpgrade, |l| {
            set(l, "Connection:", Some("Connection: keep-alive"))
        }),
        (Error::NoUpgrade, |l| set(l, "Upgrade:", None)),
        (Error::NoUpgradeWebsocket, |l| {
            set(l, "Upgrade:", Some("Upgrade: h2c"))
        }),
        (Error::NoSecKey, |l| set(l, "Sec-WebSocket-Key:", None)),
        (Error::BadSecKey, |l| {
            set(
                l,
                "Sec-WebSocket-Key:",
                Some("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==x"),
            )
        }),
        (Error::NoSecVersion, |l| {
            set(l, "Sec-WebSocket-Version:", None)
        }),
        (Error::BadSecVersion, |l| {
            set(
                l,
                "Sec-WebSocket-Version:",
                Some("Sec-WebSocket-Version: 8"),
            )
        }),
    ]
}

#[test]
fn each_request_error_alone() {
    for (want, f) in request_breakers() {
        let mut lines = request_lines();
        f(&mut lines);
        let bytes = join(&lines);
        for cut in cuts(bytes.len()) {
            let req = parse_request_cut(&bytes, cut);
            assert_eq!(check_request(&req), Err(want.clone()));
            let out = accept(&req, &ServerConfig::default(), None, &mut |_| {});
            assert_eq!(out.result, Err(want.clone()));
            let want_status = if want == Error::BadSecVersion {
                StatusCode::UPGRADE_REQUIRED
            } else {
                StatusCode::BAD_REQUEST
            };
            assert_eq!(out.response.status(), want_status);
            assert_eq!(out.response.body(), want.to_string().as_bytes());
            assert_eq!(
                out.response
                    .headers()
                    .get("sec-websocket-version")
                    .is_some(),
                want == Error::BadSecVersion
            );
            let bytes = out.to_bytes();
            let mut rp = ResponseParser::new(ParserOptions::default());
            let back = rp.feed(&bytes).unwrap().unwrap();
            assert_eq!(back.consumed, bytes.len());
            assert_eq!(back.message.body(), want.to_string().as_bytes());
        }
    }
}

#[test]
fn request_errors_strictly_ordered() {
    // Every pair (earlier, later) broken together: the earlier check wins. The later
    // breaker is applied first, so a pair on one field ends with the earlier one's edit.
    let breakers = request_breakers();
    for i in 0..breakers.len() {
        for j in i + 1..breakers.len() {
            let mut lines = request_lines();
            (breakers[j].1)(&mut lines);
            (breakers[i].1)(&mut lines);
            let req = parse_request_cut(&join(&lines), 1);
            assert_eq!(check_request(&req), Err(breakers[i].0.clone()), "{i} {j}");
        }
    }
}

#[test]
fn valid_request_gets_101() {
    let bytes = join(&request_lines());
    for cut in cuts(bytes.len()) {
        let req = parse_request_cut(&bytes, cut);
        assert!(is_upgrade(&req));
        let out = accept(&req, &ServerConfig::default(), None, &mut |_| {});
        assert_eq!(out.result, Ok(Negotiated::default()));
        assert!(!out.expect_continue);
        let res = &out.response;
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(res.headers()["sec-websocket-accept"], ACCEPT);
        assert_eq!(res.headers()["upgrade"], "websocket");
        assert_eq!(res.headers()["connection"], "Upgrade");
        assert!(res.headers()["server"]
            .to_str()
            .unwrap()
            .starts_with("rbeast/"));
        assert!(res.headers().get("sec-websocket-extensions").is_none());
        let text = String::from_utf8(out.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(!text.contains("Content-Length"));
    }
}

#[test]
fn decorator_runs_on_every_response_and_server_default() {
    let good = parse_request_cut(&join(&request_lines()), 1);
    let bad = Request::post("/").body(()).unwrap();
    for req in [&good, &bad] {
        let mut calls = 0;
        let out = accept(req, &ServerConfig::default(), None, &mut |r| {
            calls += 1;
            r.headers_mut().insert("server", "mine".parse().unwrap());
            r.headers_mut().insert("x-extra", "1".parse().unwrap());
        });
        assert_eq!(calls, 1);
        assert_eq!(out.response.headers()["server"], "mine");
        assert_eq!(out.response.headers()["x-extra"], "1");
    }
}

#[test]
fn http10_error_response_keeps_version() {
    let mut lines = request_lines();
    lines[0] = "GET /chat HTTP/1.0".into();
    let req = parse_request_cut(&join(&lines), 3);
    let out = accept(&req, &ServerConfig::default(), None, &mut |_| {});
    assert_eq!(out.result, Err(Error::BadHttpVersion));
    assert!(out.to_bytes().starts_with(b"HTTP/1.0 400 Bad Request\r\n"));
}

#[test]
fn expect_continue_is_exposed_and_written_first() {
    let mut lines = request_lines();
    lines.push("Expect: 100-continue".into());
    let req = parse_request_cut(&join(&lines), 5);
    let out = accept(&req, &ServerConfig::default(), None, &mut |_| {});
    assert!(out.expect_continue);
    let bytes = out.to_bytes();
    assert!(bytes.starts_with(CONTINUE_RESPONSE));
    assert!(bytes[CONTINUE_RESPONSE.len()..].starts_with(b"HTTP/1.1 101 "));
}

#[test]
fn is_upgrade_rules() {
    let base = || {
        Request::get("/")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
    };
    assert!(is_upgrade(&base().body(()).unwrap()));
    assert!(is_upgrade(
        &base().version(http::Version::HTTP_2).body(()).unwrap()
    ));
    assert!(!is_upgrade(
        &base().version(http::Version::HTTP_10).body(()).unwrap()
    ));
    assert!(!is_upgrade(&base().method("POST").body(()).unwrap()));
    assert!(!is_upgrade(
        &Request::get("/")
            .header("upgrade", "websocket")
            .body(())
            .unwrap()
    ));
    assert!(!is_upgrade(
        &Request::get("/")
            .header("connection", "upgrade")
            .body(())
            .unwrap()
    ));
    let no_ws = Request::get("/")
        .header("connection", "upgrade")
        .header("upgrade", "h2c");
    assert!(!is_upgrade(&no_ws.body(()).unwrap()));
    // Key and version are not looked at.
    let req = base()
        .header("sec-websocket-version", "7")
        .body(String::new())
        .unwrap();
    assert!(is_upgrade(&req));
}

#[test]
fn accept_hook_choices() {
    let mut lines = request_lines();
    lines.push("Sec-WebSocket-Protocol: chat, superchat".into());
    let req = parse_request_cut(&join(&lines), 10);
    assert_eq!(offered_subprotocols(&req), ["chat", "superchat"]);

    let mut hook = |_: &Request<()>| {
        AcceptDecision::accept()
            .with_subprotocol("superchat")
            .with_header("x-session", "42")
    };
    let out = accept(&req, &ServerConfig::default(), Some(&mut hook), &mut |_| {});
    let n = out.result.unwrap();
    assert_eq!(n.subprotocol.as_deref(), Some("superchat"));
    assert_eq!(
        out.response.headers()["sec-websocket-protocol"],
        "superchat"
    );
    assert_eq!(out.response.headers()["x-session"], "42");

    let mut reject = |_: &Request<()>| {
        AcceptDecision::reject(StatusCode::FORBIDDEN, "no entry").with_header("x-why", "test")
    };
    let mut decorated = false;
    let out = accept(
        &req,
        &ServerConfig::default(),
        Some(&mut reject),
        &mut |_| decorated = true,
    );
    assert!(decorated);
    assert_eq!(out.result, Err(Error::Rejected));
    assert_eq!(out.response.status(), StatusCode::FORBIDDEN);
    assert_eq!(out.response.body(), b"no entry");
    assert_eq!(out.response.headers()["x-why"], "test");
    let text = String::from_utf8(out.to_bytes()).unwrap();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert!(text.ends_with("Content-Length: 8\r\n\r\nno entry"));

    let mut wrong = |_: &Request<()>| AcceptDecision::accept().with_subprotocol("other");
    let out = accept(
        &req,
        &ServerConfig::default(),
        Some(&mut wrong),
        &mut |_| {},
    );
    assert!(matches!(out.result, Err(Error::InvalidArgument(_))));
    assert_eq!(out.response.status(), StatusCode::INTERNAL_SERVER_ERROR);

    // The hook is not consulted for invalid requests.
    let mut called = false;
    let mut spy = |_: &Request<()>| {
        called = true;
        AcceptDecision::accept()
    };
    let bad = Request::post("/").body(()).unwrap();
    let out = accept(&bad, &ServerConfig::default(), Some(&mut spy), &mut |_| {});
    assert_eq!(out.result, Err(Error::BadMethod));
    assert!(!called);
}

#[test]
fn decorator_subprotocol_is_read_back() {
    let req = parse_request_cut(&join(&request_lines()), 1);
    let out = accept(&req, &ServerConfig::default(), None, &mut |r| {
        r.headers_mut()
            .insert("sec-websocket-protocol", "x".parse().unwrap());
    });
    assert_eq!(out.result.unwrap().subprotocol.as_deref(), Some("x"));
}

#[test]
fn server_deflate_reply() {
    let mut lines = request_lines();
    lines.push("Sec-WebSocket-Extensions: foo, permessage-deflate; client_max_window_bits".into());
    let req = parse_request_cut(&join(&lines), 7);
    let mut cfg = ServerConfig::default();
    let out = accept(&req, &cfg, None, &mut |_| {});
    assert_eq!(out.result.unwrap().deflate, None);
    cfg.deflate.server_enable = true;
    cfg.deflate.client_max_window_bits = 12;
    let out = accept(&req, &cfg, None, &mut |_| {});
    assert_eq!(
        out.response.headers()["sec-websocket-extensions"],
        "permessage-deflate; client_max_window_bits=12"
    );
    let p = out.result.unwrap().deflate.unwrap();
    assert_eq!(p.client_max_window_bits, 12);
    assert_eq!(p.server_max_window_bits, 15);
    // A decorator that removes the reply turns compression off.
    let out = accept(&req, &cfg, None, &mut |r| {
        r.headers_mut().remove("sec-websocket-extensions");
    });
    assert_eq!(out.result.unwrap().deflate, None);
    // Invalid options: a 500 and InvalidArgument.
    cfg.deflate.comp_level = 10;
    let out = accept(&req, &cfg, None, &mut |_| {});
    assert!(matches!(out.result, Err(Error::InvalidArgument(_))));
}

// ---- client ----

fn client(cfg: &ClientConfig) -> ClientHandshake {
    ClientHandshake::with_key(
        KEY.into(),
        "server.example.com:80",
        "/chat",
        cfg,
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn client_request_exact_bytes() {
    let hs = client(&ClientConfig::default());
    assert_eq!(
        String::from_utf8(hs.to_bytes()).unwrap(),
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com:80\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    );
    let cfg = ClientConfig {
        deflate: PermessageDeflate {
            client_enable: true,
            client_no_context_takeover: true,
            ..Default::default()
        },
        subprotocols: vec!["chat".into(), "v2.json".into()],
    };
    let text = String::from_utf8(client(&cfg).to_bytes()).unwrap();
    assert!(text.contains(
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=15; \
client_max_window_bits=15; client_no_context_takeover\r\n"
    ));
    assert!(text.contains("Sec-WebSocket-Protocol: chat, v2.json\r\n"));
    // The request passes the server's checks.
    let req = parse_request_cut(text.as_bytes(), text.len() / 2);
    assert_eq!(check_request(&req), Ok(()));
}

#[test]
fn client_bad_arguments() {
    let cfg = ClientConfig::default();
    let bad = |host: &str, target: &str, cfg: &ClientConfig| {
        ClientHandshake::new(host, target, cfg).unwrap_err()
    };
    let invalid = Error::InvalidArgument;
    assert_eq!(
        bad("a\r\nb", "/", &cfg),
        invalid(ArgumentError::HandshakeHost)
    );
    assert_eq!(bad("a", "", &cfg), invalid(ArgumentError::HandshakeTarget));
    assert_eq!(
        bad("a", "/ x", &cfg),
        invalid(ArgumentError::HandshakeTarget)
    );
    let sub = ClientConfig {
        subprotocols: vec!["a b".into()],
        ..Default::default()
    };
    assert_eq!(bad("a", "/", &sub), invalid(ArgumentError::Subprotocol));
    let pmd = ClientConfig {
        deflate: PermessageDeflate {
            client_max_window_bits: 16,
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        bad("a", "/", &pmd),
        invalid(ArgumentError::ClientMaxWindowBits)
    );
}

fn response_lines() -> Vec<String> {
    vec![
        "HTTP/1.1 101 Switching Protocols".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Accept: {ACCEPT}"),
    ]
}

fn parse_response_cut(bytes: &[u8], cut: usize) -> ResponseType {
    let mut p = ResponseParser::new(ParserOptions::default());
    if let Some(done) = p.feed(&bytes[..cut]).unwrap() {
        return done.message;
    }
    p.feed(&bytes[cut..]).unwrap().unwrap().message
}

fn response_breakers() -> Vec<Breaker> {
    fn set(lines: &mut Vec<String>, prefix: &str, to: Option<&str>) {
        lines.retain(|l| !l.starts_with(prefix));
        if let Some(t) = to {
            lines.push(t.to_string());
        }
    }
    vec![
        (Error::UpgradeDeclined, |l| l[0] = "HTTP/1.1 200 OK".into()),
        (Error::BadHttpVersion, |l| {
            l[0] = l[0].replace("HTTP/1.1", "HTTP/1.0")
        }),
        (Error::NoConnection, |l| set(l, "Connection:", None)),
        (Error::NoConnectionUpgrade, |l| {
            set(l, "Connection:", Some("Connection: close"))
        }),
        (Error::NoUpgrade, |l| set(l, "Upgrade:", None)),
        (Error::NoUpgradeWebsocket, |l| {
            set(l, "Upgrade:", Some("Upgrade: h2c"))
        }),
        (Error::NoSecAccept, |l| {
            set(l, "Sec-WebSocket-Accept:", None)
        }),
        (Error::BadSecAccept, |l| {
            set(
                l,
                "Sec-WebSocket-Accept:",
                Some("Sec-WebSocket-Accept: AAAA"),
            )
        }),
    ]
}

#[test]
fn response_errors_each_and_in_order() {
    let hs = client(&ClientConfig::default());
    let breakers = response_breakers();
    for (i, (want, f)) in breakers.iter().enumerate() {
        let mut lines = response_lines();
        f(&mut lines);
        let bytes = join(&lines);
        for cut in cuts(bytes.len()) {
            let res = parse_response_cut(&bytes, cut);
            assert_eq!(
                hs.check_response(&res),
                Err(want.clone()),
                "{want:?} cut {cut}"
            );
        }
        for (later, g) in &breakers[i + 1..] {
            let mut lines = response_lines();
            g(&mut lines);
            f(&mut lines);
            let res = parse_response_cut(&join(&lines), 2);
            assert_eq!(
                hs.check_response(&res),
                Err(want.clone()),
                "{want:?} before {later:?}"
            );
        }
    }
    let bytes = join(&response_lines());
    for cut in cuts(bytes.len()) {
        let res = parse_response_cut(&bytes, cut);
        assert_eq!(hs.check_response(&res), Ok(Negotiated::default()));
    }
}

#[test]
fn declined_response_keeps_body() {
    let bytes = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\nlog in first";
    for cut in cuts(bytes.len()) {
        let res = parse_response_cut(bytes, cut);
        assert_eq!(
            client(&ClientConfig::default()).check_response(&res),
            Err(Error::UpgradeDeclined)
        );
        assert_eq!(res.body(), b"log in first");
    }
}

fn with_line(extra: &[&str]) -> ResponseType {
    let mut lines = response_lines();
    lines.extend(extra.iter().map(|s| s.to_string()));
    parse_response_cut(&join(&lines), 1)
}

#[test]
fn client_checks_extension_reply() {
    let off = client(&ClientConfig::default());
    let on_cfg = ClientConfig {
        deflate: PermessageDeflate {
            client_enable: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let on = client(&on_cfg);
    let pmd = "Sec-WebSocket-Extensions: permessage-deflate";
    assert_eq!(
        off.check_response(&with_line(&[pmd])),
        Err(Error::BadExtensionReply)
    );
    let n = on.check_response(&with_line(&[pmd])).unwrap();
    assert_eq!(n.deflate, Some(PmdParams::default()));
    assert_eq!(on.check_response(&with_line(&[])).unwrap().deflate, None);
    let twice = [pmd, pmd];
    assert_eq!(
        on.check_response(&with_line(&twice)),
        Err(Error::BadExtensionReply)
    );
    let other = "Sec-WebSocket-Extensions: x-foo";
    assert_eq!(
        on.check_response(&with_line(&[other])),
        Err(Error::BadExtensionReply)
    );
}

#[test]
fn client_checks_subprotocol() {
    let cfg = ClientConfig {
        subprotocols: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let hs = client(&cfg);
    let pick = |p: &str| with_line(&[&format!("Sec-WebSocket-Protocol: {p}")]);
    assert_eq!(
        hs.check_response(&pick("b"))
            .unwrap()
            .subprotocol
            .as_deref(),
        Some("b")
    );
    assert_eq!(hs.check_response(&pick("c")), Err(Error::BadSubprotocol));
    assert_eq!(hs.check_response(&pick("a, b")), Err(Error::BadSubprotocol));
    assert_eq!(hs.check_response(&pick("B")), Err(Error::BadSubprotocol));
    let two = with_line(&["Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: a"]);
    assert_eq!(hs.check_response(&two), Err(Error::BadSubprotocol));
    assert_eq!(
        hs.check_response(&with_line(&[])).unwrap().subprotocol,
        None
    );
    // Without an offer, any choice is wrong.
    let plain = client(&ClientConfig::default());
    assert_eq!(plain.check_response(&pick("a")), Err(Error::BadSubprotocol));
    // An offer added by the decorator counts.
    let decorated =
        ClientHandshake::with_key(KEY.into(), "h", "/", &ClientConfig::default(), &mut |r| {
            r.headers_mut()
                .insert("sec-websocket-protocol", "z".parse().unwrap());
        })
        .unwrap();
    assert_eq!(
        decorated
            .check_response(&pick("z"))
            .unwrap()
            .subprotocol
            .as_deref(),
        Some("z")
    );
}

#[test]
fn full_round_trip_with_deflate_and_subprotocol() {
    let ccfg = ClientConfig {
        deflate: PermessageDeflate {
            client_enable: true,
            server_max_window_bits: 12,
            ..Default::default()
        },
        subprotocols: vec!["chat".into()],
    };
    let scfg = ServerConfig {
        deflate: PermessageDeflate {
            server_enable: true,
            client_max_window_bits: 10,
            server_no_context_takeover: true,
            ..Default::default()
        },
    };
    let hs = ClientHandshake::new("h:1", "/x?y=z", &ccfg).unwrap();
    let req_bytes = hs.to_bytes();
    for cut in cuts(req_bytes.len()) {
        let req = parse_request_cut(&req_bytes, cut);
        let mut hook = |_: &Request<()>| AcceptDecision::accept().with_subprotocol("chat");
        let out = accept(&req, &scfg, Some(&mut hook), &mut |_| {});
        let server_side = out.result.clone().unwrap();
        let mut res_bytes = out.to_bytes();
        res_bytes.extend_from_slice(b"\x81\x00");
        for rcut in cuts(res_bytes.len() - 2) {
            let mut p = ResponseParser::new(ParserOptions::default());
            let mut first = p.feed(&res_bytes[..rcut]).unwrap();
            if first.is_none() {
                first = p.feed(&res_bytes[rcut..]).unwrap();
                assert_eq!(res_bytes.len() - rcut - first.as_ref().unwrap().consumed, 2);
            }
            let client_side = hs.check_response(&first.unwrap().message).unwrap();
            assert_eq!(client_side, server_side);
            let p = client_side.deflate.unwrap();
            assert_eq!(p.server_max_window_bits, 12);
            assert_eq!(p.client_max_window_bits, 10);
            assert!(p.server_no_context_takeover && !p.client_no_context_takeover);
            assert_eq!(client_side.subprotocol.as_deref(), Some("chat"));
        }
    }
}

#[test]
fn generated_keys_round_trip() {
    for _ in 0..20 {
        let hs = ClientHandshake::new("h", "/", &ClientConfig::default()).unwrap();
        let req = parse_request_cut(&hs.to_bytes(), 4);
        let out = accept(&req, &ServerConfig::default(), None, &mut |_| {});
        let res = parse_response_cut(&out.to_bytes(), 4);
        assert_eq!(hs.check_response(&res), Ok(Negotiated::default()));
    }
}
