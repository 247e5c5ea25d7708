//! Allocations on the read and write paths in steady state.
//!
//! A counting global allocator (this test binary only) counts the allocations made by the
//! current thread. After a warm-up, an echo cycle (two writes and two reads) allocates
//! nothing: a handler that captures a few handles is kept inline in its operation, and a
//! write's buffers with it. It also counts the bytes allocated, for what a new context
//! costs: its cross-thread queue allocates as tasks flow, not up front.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use rbeast::net::{FlatBuffer, IoContext, TcpAcceptor, TcpStream, DEFAULT_POST_CAPACITY};
use rbeast::Error;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

/// Counts one allocation of `bytes` bytes on this thread.
fn count(bytes: usize) {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let _ = BYTES.try_with(|c| c.set(c.get() + bytes));
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting only touches
// a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(|c| c.get())
}

fn bytes_allocated() -> usize {
    BYTES.with(|c| c.get())
}

const MSG: Bytes =
    Bytes::from_static(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
const WARM_UP: usize = 200;
const MEASURED: usize = 2000;
/// Operations initiated per echo cycle: write, read, write back, read back.
const OPS_PER_CYCLE: usize = 4;

/// One echo cycle between two byte streams; every handler captures shared state, as real
/// handlers do.
macro_rules! echo_cycle {
    ($ctx:expr, $a:expr, $b:expr, $buf_a:expr, $buf_b:expr, $done:expr) => {{
        let n = MSG.len();
        let target = $done.get() + OPS_PER_CYCLE;
        let d = $done.clone();
        $a.async_write(MSG, move |r, k| {
            assert_eq!((r, k), (Ok(()), n));
            d.set(d.get() + 1);
        });
        let (d, b2, buf) = ($done.clone(), $b.clone(), $buf_b.clone());
        $b.async_read(&$buf_b, n, move |r, k| {
            assert_eq!((r, k), (Ok(()), n));
            buf.consume(n);
            let d2 = d.clone();
            b2.async_write(MSG, move |r, k| {
                assert_eq!((r, k), (Ok(()), n));
                d2.set(d2.get() + 1);
            });
            d.set(d.get() + 1);
        });
        let (d, buf) = ($done.clone(), $buf_a.clone());
        $a.async_read(&$buf_a, n, move |r, k| {
            assert_eq!((r, k), (Ok(()), n));
            buf.consume(n);
            d.set(d.get() + 1);
        });
        while $done.get() < target {
            $ctx.run_one();
        }
    }};
}

/// Runs `WARM_UP` cycles, then returns the allocations per operation over `MEASURED`.
fn per_operation(mut cycle: impl FnMut()) -> f64 {
    for _ in 0..WARM_UP {
        cycle();
    }
    let before = allocations();
    for _ in 0..MEASURED {
        cycle();
    }
    let made = allocations() - before;
    made as f64 / (MEASURED * OPS_PER_CYCLE) as f64
}

#[test]
fn a_test_stream_echo_allocates_nothing() {
    let ctx = IoContext::new().unwrap();
    let (a, b) = rbeast::test::Stream::pair(&ctx);
    let (buf_a, buf_b) = (FlatBuffer::new(), FlatBuffer::new());
    let done = Rc::new(Cell::new(0usize));
    let per_op = per_operation(|| echo_cycle!(ctx, a, b, buf_a, buf_b, done));
    println!("test::Stream: {per_op:.3} allocations per operation");
    assert_eq!(per_op, 0.0, "{per_op:.3} allocations per operation");
}

#[test]
fn a_tcp_echo_allocates_nothing() {
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let server = Rc::new(RefCell::new(None));
    let s = server.clone();
    acceptor.async_accept(move |r| *s.borrow_mut() = Some(r.unwrap()));
    let client = TcpStream::new(&ctx);
    client.async_connect(acceptor.local_addr().unwrap(), |r| r.unwrap());
    ctx.run();
    let server = server.borrow_mut().take().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    let (buf_a, buf_b) = (FlatBuffer::new(), FlatBuffer::new());
    let done = Rc::new(Cell::new(0usize));
    let per_op = per_operation(|| echo_cycle!(ctx, client, server, buf_a, buf_b, done));
    println!("TCP: {per_op:.3} allocations per operation");
    assert_eq!(per_op, 0.0, "{per_op:.3} allocations per operation");
}

/// Allocations per echo cycle of a `size`-byte message over WebSocket streams on
/// `test::Stream`, with frames of at most `frame` bytes.
fn websocket_echo_allocations(size: usize, frame: usize) -> f64 {
    use rbeast::websocket::Stream;
    use rbeast::Role;
    let ctx = IoContext::new().unwrap();
    let (a, b) = rbeast::test::Stream::pair(&ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    client.open_unchecked(Role::Client);
    server.open_unchecked(Role::Server);
    for ws in [&client, &server] {
        ws.set_binary(true);
        ws.set_write_buffer_bytes(frame).unwrap();
    }
    let message = Bytes::from(vec![7u8; size]);
    fn serve(ws: Stream<rbeast::test::Stream>, buf: FlatBuffer) {
        let (w, b) = (ws.clone(), buf.clone());
        ws.async_read(&buf, move |r, _| {
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
    serve(server.clone(), FlatBuffer::new());
    let buf = FlatBuffer::new();
    let cycle = |n: usize| {
        for _ in 0..n {
            client.async_write(message.clone(), |r, _| r.unwrap());
            client.async_read(&buf, |r, _| r.unwrap());
            while buf.size() < size {
                ctx.run_one();
            }
            buf.clear();
            ctx.poll();
        }
    };
    cycle(WARM_UP);
    let before = allocations();
    cycle(MEASURED);
    (allocations() - before) as f64 / MEASURED as f64
}

#[test]
fn websocket_frames_allocate_nothing_beyond_their_operations() {
    let one_frame = websocket_echo_allocations(4096, 4096);
    let many_frames = websocket_echo_allocations(4096, 64); // 64 frames each way
    let past_the_mark = websocket_echo_allocations(256 << 10, 4096); // 64 frames, 256 KiB
    println!(
        "allocations per echo: {one_frame} (1 frame), {many_frames} (64 frames), \
         {past_the_mark} (64 frames past the output's high-water mark)"
    );
    // Handlers and each write's buffers are kept inline in their operations. The server's
    // buffer, handed out with `take()`, is reclaimed in place once the echo is written.
    assert_eq!(one_frame, 0.0, "{one_frame} allocations per echo");
    // A write whose frames all fit below the output's high-water mark is framed as it
    // starts, one frame or many.
    assert_eq!(
        many_frames, 0.0,
        "{many_frames} allocations per echo with 64 frames"
    );
    // One that does not is stored as an operation, in one box (so that an idle stream
    // does not carry its room): one allocation per write, two per echo, none per frame.
    assert_eq!(
        past_the_mark, 2.0,
        "{past_the_mark} allocations per echo of 256 KiB in 4 KiB frames"
    );
}

#[test]
fn a_new_context_allocates_little_whatever_its_post_capacity() {
    let before = bytes_allocated();
    let ctx = IoContext::with_post_capacity(DEFAULT_POST_CAPACITY).unwrap();
    let used = bytes_allocated() - before;
    assert!(used < 64 * 1024, "a new context allocated {used} bytes");
    drop(ctx);
}

#[test]
fn the_post_capacity_still_bounds_the_queue() {
    let ctx = IoContext::with_post_capacity(1000).unwrap();
    let ex = ctx.executor();
    for _ in 0..1000 {
        ex.post(|| {}).unwrap();
    }
    assert_eq!(ex.post(|| {}), Err(Error::PostQueueFull));
    assert_eq!(ctx.run(), 1000);
    // Taking the tasks made room again.
    for _ in 0..1000 {
        ex.post(|| {}).unwrap();
    }
    assert_eq!(ctx.run(), 1000);
}
