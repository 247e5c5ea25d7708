//! The server side of the handshake on arbitrary bytes: parse the request (fed in two
//! pieces, cut where the first byte says), check it, negotiate, build and serialise the
//! response, and parse that response back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbeast::proto::handshake::*;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let cut = (control as usize * input.len()) / 255;
    let opts = ParserOptions {
        max_header_bytes: 4096,
        max_headers: 32,
        ..Default::default()
    };
    let mut parser = RequestParser::new(opts);
    let parsed = match parser.feed(&input[..cut]) {
        Ok(Some(p)) => Some((p, 0)),
        Ok(None) => match parser.feed(&input[cut..]) {
            Ok(Some(p)) => Some((p, cut)),
            _ => None,
        },
        Err(_) => None,
    };
    let Some((parsed, offset)) = parsed else {
        return;
    };
    assert!(offset + parsed.consumed <= input.len());
    let req = parsed.message;
    let _ = is_upgrade(&req);
    let mut cfg = ServerConfig::default();
    cfg.deflate.server_enable = control & 1 == 1;
    cfg.deflate.client_max_window_bits = 9 + (control >> 1) % 7;
    let mut hook = |r: &http::Request<()>| match offered_subprotocols(r).first() {
        Some(p) if control & 0x80 != 0 => AcceptDecision::accept().with_subprotocol(p.to_string()),
        _ => AcceptDecision::accept(),
    };
    let out = accept(&req, &cfg, Some(&mut hook), &mut |_| {});
    assert_eq!(out.result.is_ok(), out.response.status() == 101);
    let bytes = out.to_bytes();
    let mut back = ResponseParser::new(ParserOptions::default());
    let skip = if out.expect_continue {
        CONTINUE_RESPONSE.len()
    } else {
        0
    };
    let res = back
        .feed(&bytes[skip..])
        .expect("our response parses")
        .expect("complete");
    assert_eq!(res.consumed, bytes.len() - skip);
    assert_eq!(res.message.status(), out.response.status());
});
