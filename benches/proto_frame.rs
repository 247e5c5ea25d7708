//! Throughput of the sans-IO frame pieces: masking, UTF-8 validation, header codec.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rbeast::proto::frame::{FrameHeader, FrameReader, Opcode, ReadRules};
use rbeast::proto::mask::{apply_mask, mask_key};
use rbeast::proto::utf8::{validate, Utf8Validator};
use rbeast::Role;

fn masking(c: &mut Criterion) {
    let mut g = c.benchmark_group("mask");
    for size in [16usize, 1024, 16 * 1024, 1024 * 1024] {
        let mut buf = vec![0x5Au8; size + 1];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("aligned", size), &size, |b, &n| {
            b.iter(|| apply_mask(black_box(&mut buf[..n]), [1, 2, 3, 4], 0))
        });
        g.bench_with_input(BenchmarkId::new("offset_1", size), &size, |b, &n| {
            b.iter(|| apply_mask(black_box(&mut buf[1..n + 1]), [1, 2, 3, 4], 3))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("mask_key");
    g.bench_function("secure", |b| b.iter(|| black_box(mask_key(true))));
    g.bench_function("fast", |b| b.iter(|| black_box(mask_key(false))));
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let size = 16 * 1024;
    let ascii: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let sample = "Grüße, κόσμε, 日本語 and 𝄞 music; ".as_bytes();
    let mixed: Vec<u8> = sample.iter().copied().cycle().take(size).collect();
    // Cut on a character boundary so the message is valid.
    let mixed = match std::str::from_utf8(&mixed) {
        Ok(_) => mixed,
        Err(e) => mixed[..e.valid_up_to()].to_vec(),
    };
    let mut g = c.benchmark_group("utf8_16KiB");
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("{name}/whole"), |b| {
            b.iter(|| validate(black_box(text)).is_ok())
        });
        g.bench_function(format!("{name}/incremental_1500B"), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for piece in black_box(text).chunks(1500) {
                    let _ = v.feed(piece);
                }
                v.finish().is_ok()
            })
        });
    }
    g.finish();
}

fn headers(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    let h = FrameHeader::new(true, Opcode::Binary, 1000, Some([1, 2, 3, 4]));
    g.bench_function("build", |b| {
        let mut out = [0u8; 14];
        b.iter(|| black_box(&h).encode(&mut out))
    });
    let mut out = [0u8; 14];
    let n = h.encode(&mut out);
    let wire = out[..n].to_vec();
    let mut reader = FrameReader::new(ReadRules::new(Role::Server));
    g.bench_function("parse", |b| b.iter(|| reader.decode(black_box(&wire))));
    let mut reader = FrameReader::new(ReadRules::new(Role::Server));
    g.bench_function("parse_push_bytewise", |b| {
        b.iter(|| {
            let mut got = None;
            for byte in black_box(&wire).chunks(1) {
                if let Ok((_, Some(h))) = reader.push(byte) {
                    got = Some(h);
                }
            }
            got
        })
    });
    g.finish();
}

criterion_group!(benches, masking, utf8, headers);
criterion_main!(benches);
