//! The WebSocket stream's own cost, without system calls: echo round trips between a client
//! and a server `websocket::Stream` over the in-memory `test::Stream` (client masking,
//! server unmasking, framing, the corked output, the read buffer lent by the context).

use std::cell::Cell;
use std::rc::Rc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rbeast::net::{FlatBuffer, IoContext};
use rbeast::test;
use rbeast::websocket::Stream;
use rbeast::Role;

type Ws = Stream<test::Stream>;

/// The server side: read a message, write it back, read the next one.
fn serve(ws: Ws, buffer: FlatBuffer) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, _| {
        if r.is_ok() {
            let w2 = w.clone();
            w.async_write(b.take(), move |r, _| {
                if r.is_ok() {
                    serve(w2, b);
                }
            });
        }
    });
}

/// One message from the client, echoed by the server and read back by the client, each
/// message one frame.
fn echo(c: &mut Criterion) {
    echo_group(c, "websocket_echo", false, &[64, 16 * 1024, 1024 * 1024]);
}

/// As [`echo`] with Beast's defaults: `auto_fragment` on, so that a message goes out in
/// frames of `write_buffer_bytes` (4 KiB) both ways.
fn echo_fragmented(c: &mut Criterion) {
    echo_group(
        c,
        "websocket_echo_fragmented",
        true,
        &[16 * 1024, 1024 * 1024],
    );
}

fn echo_group(c: &mut Criterion, name: &str, auto_fragment: bool, sizes: &[usize]) {
    let mut g = c.benchmark_group(name);
    for &size in sizes {
        let ctx = IoContext::new().unwrap();
        let (a, b) = test::Stream::pair(&ctx);
        let (client, server) = (Stream::new(a), Stream::new(b));
        client.open_unchecked(Role::Client);
        server.open_unchecked(Role::Server);
        for ws in [&client, &server] {
            ws.set_binary(true);
            ws.set_auto_fragment(auto_fragment);
            ws.set_read_message_max(0);
        }
        client.set_secure_prng(false);
        serve(server.clone(), FlatBuffer::new());
        let message = Bytes::from(vec![b'x'; size]);
        let buffer = FlatBuffer::new();
        let done = Rc::new(Cell::new(false));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |bench, _| {
            bench.iter(|| {
                done.set(false);
                client.async_write(message.clone(), |r, _| r.unwrap());
                let d = done.clone();
                client.async_read(&buffer, move |r, _| {
                    r.unwrap();
                    d.set(true);
                });
                while !done.get() {
                    ctx.run_one();
                }
                buffer.clear();
            })
        });
        drop((client, server));
    }
    g.finish();
}

criterion_group!(benches, echo, echo_fragmented);
criterion_main!(benches);
