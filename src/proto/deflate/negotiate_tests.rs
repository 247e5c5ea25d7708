//! Negotiation tables (RFC 7692 §7.1 with Beast's choices).

use super::*;
use crate::{Error, Result};

fn server(f: impl FnOnce(&mut PermessageDeflate)) -> PermessageDeflate {
    let mut o = PermessageDeflate {
        server_enable: true,
        ..Default::default()
    };
    f(&mut o);
    o
}

fn neg(ours: &PermessageDeflate, offer: &str) -> Option<(PmdParams, String)> {
    negotiate(ours, [offer.as_bytes()])
}

fn params(s: u8, c: u8, snct: bool, cnct: bool) -> PmdParams {
    PmdParams {
        server_max_window_bits: s,
        client_max_window_bits: c,
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
    }
}

#[test]
fn server_table() {
    let d = server(|_| {});
    let pmd = "permessage-deflate";
    // (options, offer, reply, params)
    let table: Vec<(PermessageDeflate, &str, Option<&str>, PmdParams)> = vec![
        (d, pmd, Some(pmd), params(15, 15, false, false)),
        (d, "PerMessage-Deflate", Some(pmd), params(15, 15, false, false)),
        // server_max_window_bits: min(offer, ours), raised to 9, emitted only below 15.
        (d, "permessage-deflate; server_max_window_bits=10", Some("permessage-deflate; server_max_window_bits=10"), params(10, 15, false, false)),
        (d, "permessage-deflate; server_max_window_bits=8", Some("permessage-deflate; server_max_window_bits=9"), params(9, 15, false, false)),
        (d, "permessage-deflate; server_max_window_bits=15", Some(pmd), params(15, 15, false, false)),
        (d, "permessage-deflate; server_max_window_bits=\"12\"", Some("permessage-deflate; server_max_window_bits=12"), params(12, 15, false, false)),
        (server(|o| o.server_max_window_bits = 11), pmd, Some("permessage-deflate; server_max_window_bits=11"), params(11, 15, false, false)),
        (server(|o| o.server_max_window_bits = 11), "permessage-deflate; server_max_window_bits=13", Some("permessage-deflate; server_max_window_bits=11"), params(11, 15, false, false)),
        // client_max_window_bits without value: ours, emitted below 15.
        (d, "permessage-deflate; client_max_window_bits", Some(pmd), params(15, 15, false, false)),
        (d, "permessage-deflate; client_max_window_bits=", Some(pmd), params(15, 15, false, false)),
        (server(|o| o.client_max_window_bits = 10), "permessage-deflate; client_max_window_bits", Some("permessage-deflate; client_max_window_bits=10"), params(15, 10, false, false)),
        // with a value: min, always emitted.
        (d, "permessage-deflate; client_max_window_bits=15", Some("permessage-deflate; client_max_window_bits=15"), params(15, 15, false, false)),
        (d, "permessage-deflate; client_max_window_bits=8", Some("permessage-deflate; client_max_window_bits=8"), params(15, 8, false, false)),
        (server(|o| o.client_max_window_bits = 9), "permessage-deflate; client_max_window_bits=12", Some("permessage-deflate; client_max_window_bits=9"), params(15, 9, false, false)),
        // absent while ours < 15: declined entirely.
        (server(|o| o.client_max_window_bits = 14), pmd, None, PmdParams::default()),
        // no_context_takeover: OR of offer and options, echoed first.
        (d, "permessage-deflate; server_no_context_takeover", Some("permessage-deflate; server_no_context_takeover"), params(15, 15, true, false)),
        (d, "permessage-deflate; client_no_context_takeover", Some("permessage-deflate; client_no_context_takeover"), params(15, 15, false, true)),
        (d, "permessage-deflate; server_no_context_takeover=", Some("permessage-deflate; server_no_context_takeover"), params(15, 15, true, false)),
        (server(|o| o.server_no_context_takeover = true), pmd, Some("permessage-deflate; server_no_context_takeover"), params(15, 15, true, false)),
        (server(|o| o.client_no_context_takeover = true), pmd, Some("permessage-deflate; client_no_context_takeover"), params(15, 15, false, true)),
        (server(|o| { o.server_max_window_bits = 9; o.client_max_window_bits = 9; o.client_no_context_takeover = true; }),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9"),
            params(9, 9, true, true)),
        // Invalid offers: declined silently.
        (d, "permessage-deflate; server_max_window_bits", None, PmdParams::default()),
        (d, "permessage-deflate; server_max_window_bits=", None, PmdParams::default()),
        (d, "permessage-deflate; server_max_window_bits=7", None, PmdParams::default()),
        (d, "permessage-deflate; server_max_window_bits=16", None, PmdParams::default()),
        (d, "permessage-deflate; server_max_window_bits=010", None, PmdParams::default()),
        (d, "permessage-deflate; server_max_window_bits=1a", None, PmdParams::default()),
        (d, "permessage-deflate; client_max_window_bits=7", None, PmdParams::default()),
        (d, "permessage-deflate; client_max_window_bits=100", None, PmdParams::default()),
        (d, "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", None, PmdParams::default()),
        (d, "permessage-deflate; client_max_window_bits; client_max_window_bits", None, PmdParams::default()),
        (d, "permessage-deflate; server_no_context_takeover; server_no_context_takeover", None, PmdParams::default()),
        (d, "permessage-deflate; client_no_context_takeover; client_no_context_takeover", None, PmdParams::default()),
        (d, "permessage-deflate; server_no_context_takeover=1", None, PmdParams::default()),
        (d, "permessage-deflate; client_no_context_takeover=yes", None, PmdParams::default()),
        (d, "permessage-deflate; foo", None, PmdParams::default()),
        (d, "permessage-deflate; a=\"open", None, PmdParams::default()),
        (d, "x-webkit-deflate-frame", None, PmdParams::default()),
        (d, "", None, PmdParams::default()),
        // Several offers: the first acceptable one wins.
        (d, "permessage-deflate; foo, permessage-deflate; server_max_window_bits=10", Some("permessage-deflate; server_max_window_bits=10"), params(10, 15, false, false)),
        (d, "foo, permessage-deflate; client_no_context_takeover, permessage-deflate", Some("permessage-deflate; client_no_context_takeover"), params(15, 15, false, true)),
        (server(|o| o.client_max_window_bits = 12), "permessage-deflate, permessage-deflate; client_max_window_bits", Some("permessage-deflate; client_max_window_bits=12"), params(15, 12, false, false)),
    ];
    for (ours, offer, reply, p) in table {
        let got = neg(&ours, offer);
        match reply {
            None => assert_eq!(got, None, "{offer:?}"),
            Some(r) => assert_eq!(got, Some((p, r.to_string())), "{offer:?}"),
        }
        // The server's own reading of its reply gives the same parameters.
        if let Some((p, r)) = neg(&ours, offer) {
            assert_eq!(read_params([r.as_bytes()]), Some(p), "{r}");
        }
        // Disabled: never accepted.
        let off = PermessageDeflate {
            server_enable: false,
            ..ours
        };
        assert_eq!(neg(&off, offer), None);
    }
}

#[test]
fn server_window_bits_every_combination() {
    for ours in 9..=15u8 {
        let o = server(|o| o.server_max_window_bits = ours);
        for offered in 8..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={offered}");
            let (p, reply) = neg(&o, &offer).unwrap();
            let want = offered.min(ours).max(9);
            assert_eq!(p.server_max_window_bits, want);
            assert_eq!(reply.contains("server_max_window_bits"), want < 15);
        }
        for offered in 8..=15u8 {
            let c = server(|o| o.client_max_window_bits = ours);
            let offer = format!("permessage-deflate; client_max_window_bits={offered}");
            let (p, reply) = neg(&c, &offer).unwrap();
            assert_eq!(p.client_max_window_bits, offered.min(ours));
            assert!(reply.ends_with(&format!("client_max_window_bits={}", offered.min(ours))));
        }
    }
}

#[test]
fn several_fields() {
    let d = server(|_| {});
    let fields: [&[u8]; 3] = [
        b"x-foo",
        b"permessage-deflate; bogus",
        b"permessage-deflate; client_max_window_bits",
    ];
    assert_eq!(negotiate(&d, fields).unwrap().1, "permessage-deflate");
    let bad: [&[u8]; 2] = [b"\xff\xfe", b"permessage-deflate"];
    assert!(negotiate(&d, bad).is_some());
}

#[test]
fn offer_strings() {
    let mut o = PermessageDeflate::default();
    assert_eq!(client_offer(&o), None);
    o.client_enable = true;
    o.server_max_window_bits = 10;
    o.client_max_window_bits = 11;
    o.server_no_context_takeover = true;
    o.client_no_context_takeover = true;
    assert_eq!(
        client_offer(&o).unwrap(),
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=11; \
server_no_context_takeover; client_no_context_takeover"
    );
}

#[test]
fn client_reply_table() {
    let d = PermessageDeflate {
        client_enable: true,
        ..Default::default()
    };
    let small = PermessageDeflate {
        server_max_window_bits: 10,
        client_max_window_bits: 12,
        ..d
    };
    let snct = PermessageDeflate {
        server_no_context_takeover: true,
        ..d
    };
    let cnct = PermessageDeflate {
        client_no_context_takeover: true,
        ..d
    };
    let bad = Err(Error::BadExtensionReply);
    let table: Vec<(PermessageDeflate, &str, Result<Option<PmdParams>>)> = vec![
        (
            d,
            "permessage-deflate",
            Ok(Some(params(15, 15, false, false))),
        ),
        (
            d,
            "permessage-deflate; server_max_window_bits=9",
            Ok(Some(params(9, 15, false, false))),
        ),
        (
            d,
            "permessage-deflate; server_max_window_bits=8",
            Ok(Some(params(8, 15, false, false))),
        ),
        (
            d,
            "permessage-deflate; client_max_window_bits=10",
            Ok(Some(params(15, 10, false, false))),
        ),
        (
            d,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            Ok(Some(params(15, 15, true, true))),
        ),
        (
            small,
            "permessage-deflate; server_max_window_bits=10",
            Ok(Some(params(10, 12, false, false))),
        ),
        (
            small,
            "permessage-deflate; server_max_window_bits=9; client_max_window_bits=12",
            Ok(Some(params(9, 12, false, false))),
        ),
        (
            snct,
            "permessage-deflate; server_no_context_takeover",
            Ok(Some(params(15, 15, true, false))),
        ),
        (
            cnct,
            "permessage-deflate",
            Ok(Some(params(15, 15, false, true))),
        ),
        // Larger than offered, missing required answers, malformed.
        (
            small,
            "permessage-deflate; server_max_window_bits=11",
            bad.clone(),
        ),
        (small, "permessage-deflate", bad.clone()),
        (
            small,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13",
            bad.clone(),
        ),
        (snct, "permessage-deflate", bad.clone()),
        (d, "permessage-deflate; server_max_window_bits", bad.clone()),
        (
            d,
            "permessage-deflate; server_max_window_bits=7",
            bad.clone(),
        ),
        (d, "permessage-deflate; client_max_window_bits", bad.clone()),
        (
            d,
            "permessage-deflate; client_max_window_bits=",
            bad.clone(),
        ),
        (
            d,
            "permessage-deflate; server_no_context_takeover=1",
            bad.clone(),
        ),
        (
            d,
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            bad.clone(),
        ),
        (
            d,
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            bad.clone(),
        ),
        (
            d,
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
            bad.clone(),
        ),
        (
            d,
            "permessage-deflate; server_max_window_bits=9; server_max_window_bits=9",
            bad.clone(),
        ),
        (d, "permessage-deflate; unknown", bad.clone()),
        (d, "permessage-deflate, permessage-deflate", bad.clone()),
        (d, "permessage-deflate, x-other", bad.clone()),
        (d, "x-other", bad.clone()),
        (d, "permessage-deflate; x=\"", bad.clone()),
        (
            PermessageDeflate::default(),
            "permessage-deflate",
            bad.clone(),
        ),
        (PermessageDeflate::default(), "", Ok(None)),
        (d, "", Ok(None)),
    ];
    for (ours, reply, want) in table {
        assert_eq!(check_reply(&ours, [reply.as_bytes()]), want, "{reply:?}");
    }
    assert_eq!(check_reply(&d, std::iter::empty()), Ok(None));
    let two: [&[u8]; 2] = [b"permessage-deflate", b"permessage-deflate"];
    assert_eq!(check_reply(&d, two), bad);
}

#[test]
fn every_server_reply_passes_the_client_check() {
    // Whatever a server negotiates from our default-shaped offer, our client accepts it,
    // and both ends agree.
    for sbits in 9..=15u8 {
        for cbits in 9..=15u8 {
            for flags in 0..16u8 {
                let client = PermessageDeflate {
                    client_enable: true,
                    server_max_window_bits: sbits,
                    client_max_window_bits: cbits,
                    server_no_context_takeover: flags & 1 != 0,
                    client_no_context_takeover: flags & 2 != 0,
                    ..Default::default()
                };
                let srv = PermessageDeflate {
                    server_enable: true,
                    server_max_window_bits: 24 - sbits,
                    client_max_window_bits: 24 - cbits,
                    server_no_context_takeover: flags & 4 != 0,
                    client_no_context_takeover: flags & 8 != 0,
                    ..Default::default()
                };
                let offer = client_offer(&client).unwrap();
                let (p, reply) = neg(&srv, &offer).unwrap();
                let got = check_reply(&client, [reply.as_bytes()]).unwrap().unwrap();
                assert_eq!(got.server_max_window_bits, p.server_max_window_bits);
                assert_eq!(got.client_max_window_bits, p.client_max_window_bits);
                assert_eq!(got.server_no_context_takeover, p.server_no_context_takeover);
                assert_eq!(got.client_no_context_takeover, p.client_no_context_takeover);
            }
        }
    }
}

#[test]
fn status_from_params() {
    let s = PermessageDeflateStatus::from(Some(params(10, 11, false, false)));
    assert_eq!(
        (s.active, s.server_window_bits, s.client_window_bits),
        (true, 10, 11)
    );
    assert_eq!(
        PermessageDeflateStatus::from(None),
        PermessageDeflateStatus::default()
    );
}
