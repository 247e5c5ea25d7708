//! The client side of the handshake on arbitrary bytes: parse a response fed in pieces and
//! check it against a request with a permessage-deflate and subprotocol offer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbeast::proto::deflate::PermessageDeflate;
use rbeast::proto::handshake::*;

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let cfg = ClientConfig {
        deflate: PermessageDeflate {
            client_enable: control & 1 == 1,
            server_max_window_bits: 9 + (control >> 1) % 7,
            server_no_context_takeover: control & 0x10 != 0,
            ..Default::default()
        },
        subprotocols: vec!["chat".into(), "v2".into()],
    };
    // The key of RFC 6455's example, so inputs can carry a matching accept value.
    let key = "dGhlIHNhbXBsZSBub25jZQ==".to_string();
    let Ok(hs) = ClientHandshake::with_key(key, "h", "/", &cfg, &mut |_| {}) else {
        return;
    };
    let step = 1 + (control as usize >> 5) * 7;
    let opts = ParserOptions {
        max_header_bytes: 4096,
        max_body_bytes: 1024,
        ..Default::default()
    };
    let mut parser = ResponseParser::new(opts);
    let mut at = 0;
    while at < input.len() {
        let end = (at + step).min(input.len());
        match parser.feed(&input[at..end]) {
            Ok(Some(parsed)) => {
                assert!(parsed.consumed <= end - at);
                assert!(parsed.message.body().len() <= 1024);
                if let Ok(n) = hs.check_response(&parsed.message) {
                    assert_eq!(parsed.message.status(), 101);
                    if let Some(p) = n.deflate {
                        assert!(cfg.deflate.client_enable);
                        assert!(p.server_max_window_bits <= cfg.deflate.server_max_window_bits);
                    }
                    if let Some(s) = n.subprotocol {
                        assert!(s == "chat" || s == "v2");
                    }
                }
                return;
            }
            Ok(None) => at = end,
            Err(_) => return,
        }
    }
});
