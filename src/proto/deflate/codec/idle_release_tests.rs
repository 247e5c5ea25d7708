//! Codec tests for freeing the zlib states of an idle direction with context takeover and
//! resuming from the kept window.

use super::tests::{deflate_msg, inflate_bounded, inflate_msg, on_fresh_thread, sample};
use super::*;
use flate2::{Decompress, FlushDecompress};
use rand::SeedableRng;

/// Messages where each repeats part of the one before (so that later ones refer back to
/// earlier ones), small and large, some larger than the window.
fn messages(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for len in [5, 300, 0, 3000, 40_000, 3000, 1, 70_000, 100, 9000] {
        let mut m = sample(&mut rng, len);
        if let Some(prev) = msgs.last() {
            let n = prev.len().min(m.len() / 2);
            m[..n].copy_from_slice(&prev[prev.len() - n..]);
        }
        msgs.push(m);
    }
    msgs
}

/// flate2's decompressor keeping its context from message to message: the peer of a
/// compressor that releases.
struct Peer(Decompress);

impl Peer {
    fn new(bits: u8) -> Peer {
        Peer(Decompress::new_with_window_bits(false, bits))
    }

    fn inflate(&mut self, wire: &[u8]) -> Vec<u8> {
        let mut input = wire.to_vec();
        input.extend_from_slice(&TAIL);
        let (start, mut out) = (self.0.total_in(), Vec::with_capacity(1024));
        loop {
            let used = (self.0.total_in() - start) as usize;
            self.0
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                .unwrap();
            if (self.0.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        out
    }
}

#[test]
fn a_released_compressor_resumes_with_its_window() {
    for bits in [15, 9] {
        let msgs = messages(31);
        let mut d = Deflater::new(8, bits, false).with_idle_release();
        let mut peer = Peer::new(bits);
        for (k, msg) in msgs.iter().enumerate() {
            let wire = deflate_msg(&mut d, msg, 1000 + k * 777, 4096);
            assert!(peer.inflate(&wire) == *msg, "bits {bits} message {k}");
            // Released after every other message: a message both follows a release and not.
            if k % 2 == 0 {
                assert!(d.release_idle());
                assert!(!d.is_allocated());
            }
        }
    }
}

#[test]
fn a_resumed_compressor_still_refers_to_what_it_sent() {
    let msg = sample(&mut rand::rngs::StdRng::seed_from_u64(32), 5000);
    let mut d = Deflater::new(8, 15, false).with_idle_release();
    let mut peer = Peer::new(15);
    let first = deflate_msg(&mut d, &msg, 5000, 1 << 16);
    assert!(d.release_idle());
    let again = deflate_msg(&mut d, &msg, 5000, 1 << 16);
    assert_eq!(peer.inflate(&first), msg);
    assert_eq!(peer.inflate(&again), msg);
    // The repeat is a few back-references, where a state without the window would code
    // all of it again.
    assert!(
        again.len() * 20 < first.len(),
        "{} vs {}",
        again.len(),
        first.len()
    );
}

#[test]
fn a_released_decompressor_resumes_with_its_window() {
    for bits in [15, 9] {
        let msgs = messages(33);
        let mut d = Deflater::new(6, bits, false); // the peer keeps its context
        let mut i = Inflater::new(bits, false).with_idle_release();
        for (k, msg) in msgs.iter().enumerate() {
            let wire = deflate_msg(&mut d, msg, msg.len().max(1), 1 << 20);
            let got = if k % 3 == 0 {
                inflate_msg(&mut i, &wire, 97).unwrap()
            } else {
                inflate_bounded(&mut i, &wire, 1000, 777, usize::MAX).unwrap()
            };
            assert!(got == *msg, "bits {bits} message {k}");
            if k % 4 != 3 {
                assert!(i.release_idle());
                assert!(!i.is_allocated());
            }
        }
    }
}

#[test]
fn release_waits_for_the_end_of_a_message() {
    let msg = sample(&mut rand::rngs::StdRng::seed_from_u64(34), 20_000);
    let mut d = Deflater::new(8, 15, false).with_idle_release();
    let mut wire = Vec::new();
    let p = d.compress(&msg[..1], false, &mut wire, 1 << 16).unwrap();
    assert!(p.done && wire.is_empty()); // nothing out yet, still in the message
    assert!(!d.release_idle());
    let mut rest = &msg[1..];
    loop {
        let p = d.compress(rest, true, &mut wire, 1 << 16).unwrap();
        rest = &rest[p.consumed..];
        if p.done {
            break;
        }
    }
    assert!(d.release_idle());
    assert!(!d.release_idle()); // nothing left to free

    let mut i = Inflater::new(15, false).with_idle_release();
    let mut text = Vec::new();
    i.inflate(&wire[..10], false, &mut text, usize::MAX)
        .unwrap();
    assert!(!i.release_idle());
    i.inflate(&wire[10..], true, &mut text, usize::MAX).unwrap();
    assert_eq!(text, msg);
    assert!(i.release_idle());

    // Without the kept window, or without context takeover, there is nothing to release.
    let mut keeps = Deflater::new(8, 15, false);
    deflate_msg(&mut keeps, &msg, 20_000, 1 << 16);
    assert!(!keeps.release_idle() && keeps.is_allocated());
    let mut keeps = Inflater::new(15, false);
    inflate_msg(&mut keeps, &wire, 20_000).unwrap();
    assert!(!keeps.release_idle() && keeps.is_allocated());
    let mut resets = Deflater::new(8, 15, true).with_idle_release();
    deflate_msg(&mut resets, &msg, 20_000, 1 << 16);
    assert!(!resets.release_idle() && !resets.is_allocated());
}

#[test]
fn released_states_are_reset_and_shared() {
    let msg = sample(&mut rand::rngs::StdRng::seed_from_u64(35), 3000);
    let fresh = {
        let m = msg.clone();
        on_fresh_thread(move || deflate_msg(&mut Deflater::new(8, 15, false), &m, 3000, 4096))
    };
    let mut a = Deflater::new(8, 15, false).with_idle_release();
    assert_eq!(deflate_msg(&mut a, &msg, 3000, 4096), fresh);
    assert!(a.release_idle());
    assert_eq!(pool::pooled(), (1, 0));
    // Another connection's first message takes the released state, reset: its output is
    // a fresh state's.
    let mut b = Deflater::new(8, 15, false).with_idle_release();
    assert_eq!(deflate_msg(&mut b, &msg, 3000, 4096), fresh);
    assert_eq!(pool::pooled(), (0, 0));
    // The first resumes with a state of its own.
    let mut peer = Peer::new(15);
    assert_eq!(peer.inflate(&fresh), msg);
    assert_eq!(peer.inflate(&deflate_msg(&mut a, &msg, 3000, 4096)), msg);
    assert!(a.is_allocated() && b.is_allocated());

    let wire = deflate_msg(&mut Deflater::new(6, 15, false), &msg, 3000, 4096);
    let mut i = Inflater::new(15, false).with_idle_release();
    assert_eq!(inflate_msg(&mut i, &wire, 3000).unwrap(), msg);
    assert!(i.release_idle());
    assert_eq!(pool::pooled(), (0, 1));
    let mut j = Inflater::new(15, false).with_idle_release();
    assert_eq!(inflate_msg(&mut j, &wire, 3000).unwrap(), msg);
    assert_eq!(pool::pooled(), (0, 0));
}

#[test]
fn an_error_forgets_the_window() {
    let msgs = messages(36);
    let mut d = Deflater::new(6, 15, false);
    let mut i = Inflater::new(15, false).with_idle_release();
    let wire = deflate_msg(&mut d, &msgs[3], 3000, 1 << 16);
    assert_eq!(inflate_msg(&mut i, &wire, 3000).unwrap(), msgs[3]);
    assert!(i.history.as_ref().is_some_and(|h| h.len() == 3000));
    assert!(i.release_idle());
    assert_eq!(
        inflate_msg(&mut i, &[0xff, 0xff, 0xff], 3),
        Err(Error::BadDeflateData)
    );
    assert!(!i.is_allocated());
    assert!(i.history.as_ref().is_some_and(|h| h.len() == 0));
    // The next message starts a stream afresh.
    let wire = deflate_msg(&mut Deflater::new(6, 15, false), &msgs[5], 3000, 1 << 16);
    assert_eq!(inflate_msg(&mut i, &wire, 3000).unwrap(), msgs[5]);
}
