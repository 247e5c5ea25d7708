//! What a context costs before it does anything: its cross-thread queue allocates as tasks
//! flow, so a new context holds little memory however large its post capacity.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rbeast::net::{IoContext, DEFAULT_POST_CAPACITY};
use rbeast::Error;

struct CountingBytes;

thread_local! {
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting only touches
// a const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = BYTES.try_with(|c| c.set(c.get() + layout.size()));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = BYTES.try_with(|c| c.set(c.get() + layout.size()));
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let grown = new_size.saturating_sub(layout.size());
        let _ = BYTES.try_with(|c| c.set(c.get() + grown));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingBytes = CountingBytes;

fn bytes_allocated() -> usize {
    BYTES.with(|c| c.get())
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
