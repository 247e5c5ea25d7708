//! The last window of one direction's uncompressed data.
//!
//! With context takeover a zlib state carries the last 2^`window_bits` bytes of the
//! direction's data from message to message, in a few hundred KiB of window, hash chains
//! and hash table. A codec that may free its state while the connection is idle keeps its
//! own copy of those bytes (growing only as data flows, up to the window), and the next
//! message rebuilds a state from them as a preset dictionary: references the peer makes, or
//! we make, into the window resolve to the same bytes as before.

/// The last bytes of a direction's data, at most one window of them.
#[derive(Debug)]
pub(super) struct History {
    /// At most `window` bytes; once full, a ring whose oldest byte is at `start`.
    buf: Vec<u8>,
    start: usize,
    window: usize,
}

impl History {
    /// An empty history for a window of `window_bits`.
    pub(super) fn new(window_bits: u8) -> History {
        History {
            buf: Vec::new(),
            start: 0,
            window: 1 << window_bits,
        }
    }

    /// Bytes held.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends `data`, forgetting what falls out of the window.
    pub(super) fn push(&mut self, mut data: &[u8]) {
        let window = self.window;
        if data.len() >= window {
            self.buf.clear();
            self.start = 0;
            data = &data[data.len() - window..];
        }
        let fill = (window - self.buf.len()).min(data.len());
        if fill > 0 {
            self.reserve_to(self.buf.len() + fill);
            self.buf.extend_from_slice(&data[..fill]);
            data = &data[fill..];
        }
        // Full: overwrite the oldest bytes, at most twice round the end of the ring.
        while !data.is_empty() {
            let n = (window - self.start).min(data.len());
            self.buf[self.start..self.start + n].copy_from_slice(&data[..n]);
            self.start = (self.start + n) % window;
            data = &data[n..];
        }
    }

    /// Grows the buffer to hold `need` bytes (at most the window), doubling, so that a
    /// direction that sent a few small messages holds a few bytes.
    fn reserve_to(&mut self, need: usize) {
        if need > self.buf.capacity() {
            let target = need.max(2 * self.buf.capacity()).min(self.window);
            self.buf.reserve_exact(target - self.buf.len());
        }
    }

    /// The bytes held, oldest first, in one slice (the ring is turned in place).
    pub(super) fn contiguous(&mut self) -> &[u8] {
        self.buf.rotate_left(self.start);
        self.start = 0;
        &self.buf
    }

    /// Forgets everything (the zlib state it mirrors started afresh).
    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::History;

    /// The last `window` bytes of everything pushed, the model of a history.
    fn tail(all: &[u8], window: usize) -> &[u8] {
        &all[all.len().saturating_sub(window)..]
    }

    #[test]
    fn keeps_the_last_window_of_what_was_pushed() {
        let window_bits = 9;
        let window = 1 << window_bits;
        let mut h = History::new(window_bits);
        let mut all = Vec::new();
        // Pieces that fill the window, wrap round the ring once and twice, and replace it.
        for (i, len) in [100, 300, 200, 511, 1, 0, 700, 37, 512, 1500, 3]
            .into_iter()
            .enumerate()
        {
            let piece: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            h.push(&piece);
            all.extend_from_slice(&piece);
            assert!(h.len() <= window);
            assert!(h.buf.capacity() <= window, "capacity {}", h.buf.capacity());
            assert_eq!(h.contiguous(), tail(&all, window), "after piece {i}");
        }
    }

    #[test]
    fn grows_with_the_data() {
        let mut h = History::new(15);
        h.push(b"hello");
        assert!(h.buf.capacity() < 64);
        h.push(&[7; 3000]);
        assert!(h.buf.capacity() < 8192);
        h.clear();
        assert_eq!(h.len(), 0);
        assert!(h.contiguous().is_empty());
    }

    #[test]
    fn turning_the_ring_between_pushes_keeps_the_order() {
        let mut h = History::new(9);
        let mut all = Vec::new();
        for i in 0..40u8 {
            let piece = vec![i; 50 + usize::from(i) * 3];
            h.push(&piece);
            all.extend_from_slice(&piece);
            if i % 3 == 0 {
                assert_eq!(h.contiguous(), tail(&all, 512));
            }
        }
        assert_eq!(h.contiguous(), tail(&all, 512));
    }
}
