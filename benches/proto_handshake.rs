//! Handshake and permessage-deflate throughput of the sans-IO layer.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rbeast::proto::deflate::{Deflater, Inflater};
use rbeast::proto::handshake::{
    accept, ClientConfig, ClientHandshake, ParserOptions, RequestParser, ResponseParser,
    ServerConfig,
};

fn json_message(len: usize) -> Vec<u8> {
    let mut s = String::with_capacity(len + 128);
    let mut i = 0u64;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"id\":{i},\"user\":\"user{}\",\"score\":{},\"tags\":[\"a\",\"b{}\"],\"ok\":{}}},",
            i % 97,
            (i * 7919) % 10007,
            i % 13,
            i % 2 == 0
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn handshake(c: &mut Criterion) {
    let mut ccfg = ClientConfig::default();
    ccfg.deflate.client_enable = true;
    let client = ClientHandshake::new("example.com:443", "/socket?room=1", &ccfg).unwrap();
    let request = client.to_bytes();
    let mut scfg = ServerConfig::default();
    scfg.deflate.server_enable = true;
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("server: parse request + check + build response", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            let mut p = RequestParser::new(ParserOptions::default());
            let req = p.feed(black_box(&request)).unwrap().unwrap().message;
            let answer = accept(&req, &scfg, None, &mut |_| {});
            out.clear();
            answer.write_to(&mut out);
            black_box(&out);
        })
    });
    let mut p = RequestParser::new(ParserOptions::default());
    let req = p.feed(&request).unwrap().unwrap().message;
    let response = accept(&req, &scfg, None, &mut |_| {}).to_bytes();
    g.bench_function("client: parse response + check", |b| {
        b.iter(|| {
            let mut p = ResponseParser::new(ParserOptions::default());
            let res = p.feed(black_box(&response)).unwrap().unwrap().message;
            black_box(client.check_response(&res).unwrap());
        })
    });
    g.finish();
}

fn deflate(c: &mut Criterion) {
    let msg = json_message(16 * 1024);
    let mut g = c.benchmark_group("permessage-deflate 16 KiB JSON");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    // No context takeover, so every iteration compresses the same message from scratch.
    let mut d = Deflater::new(8, 15, true);
    let mut wire = Vec::with_capacity(msg.len());
    g.bench_function("deflate (level 8, 4 KiB frames)", |b| {
        b.iter(|| {
            wire.clear();
            compress(&mut d, &msg, &mut wire);
            black_box(&wire);
        })
    });
    let mut i = Inflater::new(15, true);
    let mut out = Vec::with_capacity(msg.len());
    g.bench_function("inflate", |b| {
        b.iter(|| {
            out.clear();
            i.inflate(black_box(&wire), true, &mut out, 1 << 24)
                .unwrap();
            black_box(&out);
        })
    });
    println!("16 KiB JSON compresses to {} bytes", wire.len());
    g.finish();
}

/// Compresses a whole message into 4 KiB chunks appended to `wire`.
fn compress(d: &mut Deflater, mut input: &[u8], wire: &mut Vec<u8>) {
    loop {
        let p = d.compress(input, true, wire, 4096).unwrap();
        input = &input[p.consumed..];
        if p.done {
            return;
        }
    }
}

/// The cost of resuming freed states (`idle_release`): a small message, compressed and
/// inflated with context takeover after 32 KiB of history, with the states kept, and
/// with both freed before every message and rebuilt from the kept windows.
fn idle_release(c: &mut Criterion) {
    let history = json_message(32 * 1024);
    let msg = json_message(200);
    let mut g = c.benchmark_group("permessage-deflate 200 B after 32 KiB, deflate + inflate");
    for freed in [false, true] {
        let mut d = Deflater::new(8, 15, false).with_idle_release();
        let mut i = Inflater::new(15, false).with_idle_release();
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        compress(&mut d, &history, &mut wire);
        i.inflate(&wire, true, &mut out, 1 << 24).unwrap();
        let name = if freed {
            "states freed before each message"
        } else {
            "states kept"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                if freed {
                    d.release_idle();
                    i.release_idle();
                }
                wire.clear();
                out.clear();
                compress(&mut d, &msg, &mut wire);
                i.inflate(&wire, true, &mut out, 1 << 24).unwrap();
                black_box(&out);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, handshake, deflate, idle_release);
criterion_main!(benches);
