//! Payload masking (RFC 6455 §5.3) and mask keys.
//!
//! [`apply_mask`] XORs a payload with its 4-byte key in place; masking and unmasking are the
//! same operation. It works a 64-byte block at a time in safe code that the compiler turns
//! into SIMD loads and XORs (on x86-64, long payloads take the same loops compiled for AVX2
//! when the processor has it, chosen at run time), and it can continue a frame across
//! calls: pass the offset of the first byte within the frame payload and it returns the
//! offset after the last one.
//!
//! [`mask_key`] draws a fresh non-zero key: from a ChaCha-based generator seeded from the
//! operating system once per thread (Beast's default, `secure_prng(true)`), or from a fast
//! non-cryptographic generator (Beast's `secure_prng(false)`).

use rand::rngs::{SmallRng, StdRng};
use rand::{RngCore, SeedableRng};
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Keys handled per step of the block loop (64 bytes): whole keys, so the key keeps its phase.
const BLOCK: usize = 16;

/// Payloads at least this long take the AVX2 loops where the processor has them; shorter
/// ones finish in a step or two of the inlined loop, cheaper than the call.
#[cfg(target_arch = "x86_64")]
const WIDE_MIN: usize = 256;

/// XORs `buf` in place with `key`, where `buf[0]` is byte number `offset` of the frame
/// payload (only `offset % 4` matters). Returns `(offset + buf.len()) % 4`, the offset to
/// pass with the next piece of the same payload.
///
/// ```
/// use rbeast::proto::mask::apply_mask;
/// let key = [1, 2, 3, 4];
/// let mut data = *b"Hello, world";
/// apply_mask(&mut data, key, 0);
/// assert_ne!(&data, b"Hello, world");
/// // Unmask in two pieces: the returned offset carries the key's phase across.
/// let (a, b) = data.split_at_mut(5);
/// let next = apply_mask(a, key, 0);
/// assert_eq!(next, 1);
/// apply_mask(b, key, next);
/// assert_eq!(&data, b"Hello, world");
/// ```
#[inline(always)]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) -> usize {
    let phase = offset & 3;
    let next = (phase + buf.len()) & 3;
    let k = in_phase(key, phase);
    if buf.len() < 16 {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= k[i & 3];
        }
        return next;
    }
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_MIN {
        wide::xor_in_place_if_supported(buf, k);
        return next;
    }
    xor_in_place::<BLOCK>(buf, k);
    next
}

/// XORs `buf` with the key `k` repeated, `W` keys (`4 * W` bytes) a step.
#[inline(always)]
fn xor_in_place<const W: usize>(buf: &mut [u8], k: [u8; 4]) {
    let pattern = [k; W];
    let pattern = pattern.as_flattened();
    let mut blocks = buf.chunks_exact_mut(4 * W);
    for block in &mut blocks {
        for (b, p) in block.iter_mut().zip(pattern) {
            *b ^= *p;
        }
    }
    // The tail starts at a multiple of the step, so the pattern is still in phase.
    for (b, p) in blocks.into_remainder().iter_mut().zip(pattern) {
        *b ^= *p;
    }
}

/// Writes `src` XORed with the key `k` repeated into `dst`, `W` keys (`4 * W` bytes) a step.
#[inline(always)]
fn xor_copy<const W: usize>(dst: &mut [MaybeUninit<u8>], src: &[u8], k: [u8; 4]) {
    let pattern = [k; W];
    let pattern = pattern.as_flattened();
    // As long as `src` for the compiler too, so that one counter drives both sides.
    let dst = &mut dst[..src.len()];
    let mut to = dst.chunks_exact_mut(4 * W);
    let mut from = src.chunks_exact(4 * W);
    for (d, s) in (&mut to).zip(&mut from) {
        for ((d, s), p) in d.iter_mut().zip(s).zip(pattern) {
            d.write(s ^ p);
        }
    }
    // The tails start at a multiple of the step, so the pattern is still in phase.
    for ((d, s), p) in to
        .into_remainder()
        .iter_mut()
        .zip(from.remainder())
        .zip(pattern)
    {
        d.write(s ^ p);
    }
}

/// The same loops compiled for AVX2 (32-byte lanes, 256 bytes a step), chosen at run time.
#[cfg(target_arch = "x86_64")]
mod wide {
    use std::mem::MaybeUninit;

    /// Keys per step: 256 bytes, eight AVX2 lanes (the loop's count and jump shared by more).
    const STEP: usize = 64;

    /// Out of line: the caller, inlined where short payloads are common, stays small.
    #[inline(never)]
    pub(super) fn xor_in_place_if_supported(buf: &mut [u8], k: [u8; 4]) {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2, checked just above.
            unsafe { xor_in_place(buf, k) }
        } else {
            super::xor_in_place::<{ super::BLOCK }>(buf, k)
        }
    }

    /// Out of line, as `xor_in_place_if_supported`.
    #[inline(never)]
    pub(super) fn xor_copy_if_supported(dst: &mut [MaybeUninit<u8>], src: &[u8], k: [u8; 4]) {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2, checked just above.
            unsafe { xor_copy(dst, src, k) }
        } else {
            super::xor_copy::<{ super::BLOCK }>(dst, src, k)
        }
    }

    /// # Safety
    /// The processor must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn xor_in_place(buf: &mut [u8], k: [u8; 4]) {
        super::xor_in_place::<STEP>(buf, k)
    }

    /// # Safety
    /// The processor must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn xor_copy(dst: &mut [MaybeUninit<u8>], src: &[u8], k: [u8; 4]) {
        super::xor_copy::<STEP>(dst, src, k)
    }
}

/// The key as seen from a byte at `phase` (0 to 3) within the payload.
#[inline(always)]
fn in_phase(key: [u8; 4], phase: usize) -> [u8; 4] {
    [
        key[phase],
        key[(phase + 1) & 3],
        key[(phase + 2) & 3],
        key[(phase + 3) & 3],
    ]
}

/// Writes `src` XORed with `key` into `dst`, which must be as long: unmasking and copying in
/// one pass. `src[0]` is byte number `offset` of the frame payload; returns the offset after
/// the last byte, as [`apply_mask`] does. Every byte of `dst` is written.
///
/// Short payloads (the small messages the read paths copy out of the read buffer one by
/// one) take 16 bytes a step (8 below 16 bytes), the last step overlapping the one before
/// it instead of a loop over the rest, inlined; long ones the block or AVX2 loops, out of
/// line.
#[inline(always)]
pub(crate) fn mask_copy(
    dst: &mut [MaybeUninit<u8>],
    src: &[u8],
    key: [u8; 4],
    offset: usize,
) -> usize {
    assert_eq!(dst.len(), src.len(), "mask_copy needs equal lengths");
    let phase = offset & 3;
    let len = src.len();
    let next = (phase + len) & 3;
    let k = in_phase(key, phase);
    #[cfg(target_arch = "x86_64")]
    if len >= WIDE_MIN {
        wide::xor_copy_if_supported(dst, src, k);
        return next;
    }
    if len >= 16 {
        #[cfg(target_arch = "x86_64")]
        xor_copy_steps::<lane::Lane, 16>(dst, src, k);
        #[cfg(not(target_arch = "x86_64"))]
        xor_copy::<BLOCK>(dst, src, k);
    } else if len >= 8 {
        xor_copy_steps::<u64, 8>(dst, src, k);
    } else {
        for (i, (d, s)) in dst.iter_mut().zip(src).enumerate() {
            d.write(s ^ k[i & 3]);
        }
    }
    next
}

/// An unsigned word of `N` bytes, read and written unaligned.
trait Word: Copy + std::ops::BitXor<Output = Self> {
    fn repeat(key: [u8; 4]) -> Self;
}

/// A 16-byte SSE2 register (part of every x86_64 processor), so that a 16-byte step is one
/// load, one xor and one store rather than two of each on general registers.
#[cfg(target_arch = "x86_64")]
mod lane {
    use std::arch::x86_64::{__m128i, _mm_set1_epi32, _mm_xor_si128};

    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub(super) struct Lane(__m128i);

    impl std::ops::BitXor for Lane {
        type Output = Lane;
        #[inline(always)]
        fn bitxor(self, other: Lane) -> Lane {
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Lane(unsafe { _mm_xor_si128(self.0, other.0) })
        }
    }

    impl super::Word for Lane {
        #[inline(always)]
        fn repeat(key: [u8; 4]) -> Lane {
            // SAFETY: SSE2 is part of the x86_64 baseline.
            Lane(unsafe { _mm_set1_epi32(i32::from_ne_bytes(key)) })
        }
    }
}

impl Word for u64 {
    #[inline(always)]
    fn repeat(key: [u8; 4]) -> Self {
        u64::from_ne_bytes(*[key; 2].as_flattened().first_chunk().expect("8 bytes"))
    }
}

/// `dst = src ^ key` a word of `N` bytes at a time; `src.len()` is at least `N` and equals
/// `dst.len()`. The last word ends at the end and may overlap the one before it.
#[inline(always)]
fn xor_copy_steps<W: Word, const N: usize>(dst: &mut [MaybeUninit<u8>], src: &[u8], k: [u8; 4]) {
    debug_assert!(src.len() >= N && dst.len() == src.len());
    let mut step = |at: usize, pattern: W| {
        // SAFETY: `at + N <= len` for both slices (the callers below), and the accesses are
        // unaligned reads and writes of plain bytes.
        unsafe {
            let word = src.as_ptr().add(at).cast::<W>().read_unaligned();
            dst.as_mut_ptr()
                .add(at)
                .cast::<W>()
                .write_unaligned(word ^ pattern);
        }
    };
    let len = src.len();
    let pattern = W::repeat(k);
    let mut at = 0;
    while at + N <= len {
        step(at, pattern);
        at += N;
    }
    if at < len {
        let last = len - N;
        step(last, W::repeat(in_phase(k, last & 3)));
    }
}

thread_local! {
    static SECURE: RefCell<StdRng> = RefCell::new(StdRng::from_os_rng());
    static FAST: RefCell<SmallRng> =
        RefCell::new(SECURE.with(|s| SmallRng::from_rng(&mut *s.borrow_mut())));
}

/// A new random masking key, never all zero bytes.
///
/// With `secure` the key comes from a cryptographically secure generator (the standard
/// ChaCha-based one of `rand`) seeded from the operating system once per thread; without,
/// from a small fast generator seeded from it. Panics only if the operating system cannot
/// provide the first seed of a thread.
///
/// ```
/// use rbeast::proto::mask::mask_key;
/// assert_ne!(mask_key(true), [0; 4]);
/// assert_ne!(mask_key(false), [0; 4]);
/// ```
pub fn mask_key(secure: bool) -> [u8; 4] {
    loop {
        let v = if secure {
            SECURE.with(|r| r.borrow_mut().next_u32())
        } else {
            FAST.with(|r| r.borrow_mut().next_u32())
        };
        if v != 0 {
            return v.to_ne_bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    /// Every length up to two wide steps and a tail (0..640), every offset, every
    /// misaligned start: same bytes as the naive reference, and the returned offset
    /// continues the phase.
    #[test]
    fn matches_naive_reference() {
        let key = [0x37, 0xFA, 0x21, 0x3D];
        // Lengths past 256 take the wide loops where the processor has AVX2.
        let mut backing = [0u8; 1100 + 16];
        for (i, b) in backing.iter_mut().enumerate() {
            *b = (i * 131 + 7) as u8;
        }
        for len in (0..640).chain([1000, 1100]) {
            for offset in 0..8 {
                for start in 0..16 {
                    let mut fast = backing;
                    let mut slow = backing;
                    let ret = apply_mask(&mut fast[start..start + len], key, offset);
                    naive(&mut slow[start..start + len], key, offset);
                    assert_eq!(
                        fast[..],
                        slow[..],
                        "len {len} offset {offset} start {start}"
                    );
                    assert_eq!(ret, (offset + len) % 4);
                }
            }
        }
    }

    #[test]
    fn mask_copy_matches_apply_mask() {
        let key = [0x37, 0xFA, 0x21, 0x3D];
        let src: Vec<u8> = (0..5000u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in (0..600).chain([700, 4099, 5000]) {
            for offset in 0..4 {
                let mut expected = src[..len].to_vec();
                let want = apply_mask(&mut expected, key, offset);
                let mut dst = vec![MaybeUninit::new(0u8); len];
                let got = mask_copy(&mut dst, &src[..len], key, offset);
                // SAFETY: every element was initialised when `dst` was built.
                let dst: Vec<u8> = dst.iter().map(|b| unsafe { b.assume_init() }).collect();
                assert_eq!(dst, expected, "len {len} offset {offset}");
                assert_eq!(got, want);
            }
        }
    }

    /// The portable loops, which long payloads take only where AVX2 is missing, against the
    /// naive reference (the public functions pick the AVX2 loops where it is present).
    #[test]
    fn portable_loops_match_naive_reference_at_every_length() {
        let key = [0x37, 0xFA, 0x21, 0x3D];
        let src: Vec<u8> = (0..1100u32).map(|i| (i * 131 + 7) as u8).collect();
        for len in (0..420).chain([1000, 1100]) {
            let mut expected = src[..len].to_vec();
            naive(&mut expected, key, 0);
            let mut in_place = src[..len].to_vec();
            xor_in_place::<BLOCK>(&mut in_place, key);
            assert_eq!(in_place, expected, "in place, len {len}");
            let mut dst = vec![MaybeUninit::new(0u8); len];
            xor_copy::<BLOCK>(&mut dst, &src[..len], key);
            // SAFETY: every element was initialised when `dst` was built.
            let dst: Vec<u8> = dst.iter().map(|b| unsafe { b.assume_init() }).collect();
            assert_eq!(dst, expected, "copy, len {len}");
        }
    }

    #[test]
    fn split_across_calls_equals_one_call() {
        let key = [9, 0x80, 0xFF, 1];
        let orig: Vec<u8> = (0..1000u32).map(|i| (i ^ (i >> 3)) as u8).collect();
        let mut whole = orig.clone();
        apply_mask(&mut whole, key, 0);
        for a in [0usize, 1, 3, 17, 64, 65, 500] {
            for b in [a, a + 1, a + 63, a + 130, 999] {
                let b = b.min(1000);
                let mut parts = orig.clone();
                let o = apply_mask(&mut parts[..a], key, 0);
                let o = apply_mask(&mut parts[a..b], key, o);
                apply_mask(&mut parts[b..], key, o);
                assert_eq!(parts, whole, "split at {a} and {b}");
            }
        }
        // Masking twice restores the data.
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, orig);
    }

    #[test]
    fn keys_are_never_zero_and_vary() {
        for secure in [true, false] {
            let keys: Vec<[u8; 4]> = (0..1000).map(|_| mask_key(secure)).collect();
            assert!(keys.iter().all(|k| *k != [0; 4]));
            let mut sorted = keys.clone();
            sorted.sort();
            sorted.dedup();
            // 1000 draws of 32 bits: a repeat is possible but rare; many would be a bug.
            assert!(
                sorted.len() > 990,
                "secure={secure}: {} distinct",
                sorted.len()
            );
        }
    }

    #[test]
    fn threads_have_independent_generators() {
        let a: Vec<[u8; 4]> = (0..8).map(|_| mask_key(true)).collect();
        let b = std::thread::spawn(|| (0..8).map(|_| mask_key(true)).collect::<Vec<_>>())
            .join()
            .unwrap();
        assert_ne!(a, b);
        let c = std::thread::spawn(|| (0..8).map(|_| mask_key(false)).collect::<Vec<_>>())
            .join()
            .unwrap();
        let d = std::thread::spawn(|| (0..8).map(|_| mask_key(false)).collect::<Vec<_>>())
            .join()
            .unwrap();
        assert_ne!(c, d);
    }
}
