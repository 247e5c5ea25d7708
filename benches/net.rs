//! The reactor's hot paths: posting and running handlers, re-arming a timer, and echo round
//! trips over the in-memory `test::Stream`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rbeast::net::{FlatBuffer, IoContext, SteadyTimer};
use rbeast::test::Stream;

/// Posts `n` handlers, then runs them all.
fn post_and_run(c: &mut Criterion) {
    let mut g = c.benchmark_group("post_and_run");
    for n in [1usize, 1000] {
        let ctx = IoContext::new().unwrap();
        let count = Rc::new(Cell::new(0u64));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    let c = count.clone();
                    ctx.post(move || c.set(c.get() + 1));
                }
                black_box(ctx.run())
            })
        });
    }
    g.finish();
}

/// Re-arms a timer that has a pending wait (an idle timeout pushed back on every message):
/// the wait is cancelled, a new one started, and the cancelled handler run.
fn timer_rearm(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer");
    let ctx = IoContext::new().unwrap();
    let timer = SteadyTimer::new(&ctx);
    let aborted = Rc::new(Cell::new(0u64));
    g.throughput(Throughput::Elements(1));
    g.bench_function("rearm_with_pending_wait", |b| {
        b.iter(|| {
            timer.expires_after(Duration::from_secs(60));
            let a = aborted.clone();
            timer.async_wait(move |r| {
                if r.is_err() {
                    a.set(a.get() + 1)
                }
            });
            black_box(ctx.poll())
        })
    });
    timer.cancel();
    ctx.run();
    g.bench_function("rearm_without_wait", |b| {
        b.iter(|| black_box(timer.expires_after(Duration::from_secs(60))))
    });
    g.finish();
}

/// One echo round trip of `size` bytes: a writes, b reads and writes back, a reads.
fn stream_echo(c: &mut Criterion) {
    let mut g = c.benchmark_group("test_stream_echo");
    for size in [64usize, 16 * 1024] {
        let ctx = IoContext::new().unwrap();
        let (a, b) = Stream::pair(&ctx);
        let msg = Bytes::from(vec![0x5Au8; size]);
        let (buf_a, buf_b) = (FlatBuffer::new(), FlatBuffer::new());
        let done = Rc::new(Cell::new(0u64));
        g.throughput(Throughput::Bytes(2 * size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |bench, &size| {
            bench.iter(|| {
                a.async_write(msg.clone(), |r, _| r.unwrap());
                let (b2, bb, m) = (b.clone(), buf_b.clone(), msg.clone());
                b.async_read(&buf_b, size, move |r, _| {
                    r.unwrap();
                    bb.consume(size);
                    b2.async_write(m, |r, _| r.unwrap());
                });
                let (ba, d) = (buf_a.clone(), done.clone());
                a.async_read(&buf_a, size, move |r, _| {
                    r.unwrap();
                    ba.consume(size);
                    d.set(d.get() + 1);
                });
                ctx.run();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, post_and_run, timer_rearm, stream_echo);
criterion_main!(benches);
