//! Per-thread pools of reset zlib states.
//!
//! A compressor or decompressor that resets after every message carries nothing from one
//! message to the next, so its state goes back to its thread's pool when a message ends and
//! the next message of any connection on that thread takes it (what other servers call a
//! shared compressor). A connection idle between messages then holds no zlib state, where
//! one with context takeover keeps a few hundred KiB (unless it frees it while idle and
//! presets a pooled state with its kept window at the next message, see
//! [`History`](super::history::History)). States differ by their settings (the level,
//! memory level and window of a compressor; the window of a decompressor), so each is
//! pooled with a key of them and only taken for the same key.

use std::cell::RefCell;
use std::thread::LocalKey;

use super::{DeflateState, InflateState};

/// States of each kind a thread keeps for messages in progress at once on the thread (a
/// message arriving over several reads, or a write waiting for room); more are allocated
/// when needed and freed when given back. At most about 4.3 MiB of compressors and 0.7 MiB
/// of decompressors per thread stay after a burst.
pub(super) const POOLED: usize = 16;

type Pool<S> = LocalKey<RefCell<Vec<(u32, Box<S>)>>>;

thread_local! {
    static DEFLATE_STATES: RefCell<Vec<(u32, Box<DeflateState>)>> =
        const { RefCell::new(Vec::new()) };
    static INFLATE_STATES: RefCell<Vec<(u32, Box<InflateState>)>> =
        const { RefCell::new(Vec::new()) };
}

/// The key of a compressor's settings.
pub(super) fn deflate_key(level: u32, mem_level: u8, window_bits: u8) -> u32 {
    (level << 16) | (u32::from(mem_level) << 8) | u32::from(window_bits)
}

/// The settings of a compressor's key: (level, memory level, window bits).
pub(super) fn deflate_settings(key: u32) -> (u32, u8, u8) {
    (key >> 16, (key >> 8) as u8, key as u8)
}

/// A reset compressor state with settings `key`, if the thread has one.
pub(super) fn take_deflate(key: u32) -> Option<Box<DeflateState>> {
    take(&DEFLATE_STATES, key)
}

/// Gives a reset compressor state with settings `key` back to the thread.
pub(super) fn give_deflate(key: u32, state: Box<DeflateState>) {
    give(&DEFLATE_STATES, key, state);
}

/// A reset decompressor state for a window of `window_bits`, if the thread has one.
pub(super) fn take_inflate(window_bits: u8) -> Option<Box<InflateState>> {
    take(&INFLATE_STATES, u32::from(window_bits))
}

/// Gives a reset decompressor state for a window of `window_bits` back to the thread.
pub(super) fn give_inflate(window_bits: u8, state: Box<InflateState>) {
    give(&INFLATE_STATES, u32::from(window_bits), state);
}

/// States in the thread's pools: (compressors, decompressors).
#[cfg(test)]
pub(super) fn pooled() -> (usize, usize) {
    (
        DEFLATE_STATES.with(|p| p.borrow().len()),
        INFLATE_STATES.with(|p| p.borrow().len()),
    )
}

fn take<S>(pool: &'static Pool<S>, key: u32) -> Option<Box<S>> {
    pool.try_with(|p| {
        let mut p = p.borrow_mut();
        let at = p.iter().rposition(|(k, _)| *k == key)?;
        Some(p.swap_remove(at).1)
    })
    .ok()
    .flatten()
}

fn give<S>(pool: &'static Pool<S>, key: u32, state: Box<S>) {
    // While the thread exits (the pool already gone) the state is simply freed.
    let _ = pool.try_with(move |p| {
        let mut p = p.borrow_mut();
        if p.len() < POOLED {
            p.push((key, state));
        }
    });
}
