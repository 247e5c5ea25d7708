//! Compressing and inflating message payloads (RFC 7692 §7.2) over zlib-rs.
//!
//! Both sides allocate their zlib state lazily, when the first compressed message flows,
//! so a connection that negotiated permessage-deflate but sends small uncompressed
//! messages costs nothing. A side without context takeover holds its state only while a
//! message is in progress: between messages it waits in a per-thread pool for the next
//! message of any connection on the thread. A side with context takeover may keep its own
//! copy of its last window of data and free its state while idle
//! ([`Deflater::release_idle`], [`Inflater::release_idle`]); the next message presets a
//! state with the copy. zlib-rs's own API is used (rather than flate2's wrapper of it)
//! because it takes the memory level, Beast's `memLevel`.

use std::fmt;

use bytes::BufMut;
use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status};

use super::{PermessageDeflate, PmdParams};
use crate::{ArgumentError, Error, Result, Role};

/// The four bytes a sync flush ends with, removed by the sender and restored by the receiver.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest `max_out` accepted by [`Deflater::compress`].
///
/// Four bytes of each call's room carry the held-back end of the previous call, and a sync
/// flush that fills the output exactly makes zlib start another empty block (5 bytes) on the
/// next call; with at least 12 bytes of fresh room every call drains more than it adds, so
/// a message always completes. (Beast's minimum `write_buffer_bytes` is 8.)
pub const MIN_DEFLATE_CHUNK: usize = 16;

/// Size of the scratch buffer an [`Inflater`] inflates into before it checks the limit and
/// copies to the caller: the most memory inflation uses beyond the caller's buffer.
pub const INFLATE_CHUNK: usize = 8 * 1024;

fn window(bits: u8) -> u8 {
    // zlib cannot use an 8-bit raw window; 9 is a superset for the inflater, too.
    bits.clamp(9, 15)
}

/// What one [`Deflater::compress`] call did.
///
/// ```
/// let p = rbeast::proto::deflate::DeflateProgress::default();
/// assert!(!p.done && p.consumed == 0 && p.written == 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeflateProgress {
    /// Bytes of input consumed.
    pub consumed: usize,
    /// Bytes appended to the output.
    pub written: usize,
    /// For a non-last piece: all input was consumed. For the last piece: the message is
    /// complete (all output written, tail removed). Otherwise call again with the rest.
    pub done: bool,
}

struct DeflateState {
    z: Deflate,
    scratch: Vec<u8>,
    held: [u8; 4],
    held_len: usize,
    /// Bytes given to the caller for the current message.
    message_len: usize,
}

impl fmt::Debug for DeflateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeflateState")
            .field("total_in", &self.z.total_in())
            .field("total_out", &self.z.total_out())
            .field("held_len", &self.held_len)
            .field("message_len", &self.message_len)
            .finish_non_exhaustive()
    }
}

/// Compresses outgoing messages, piece by piece, into bounded chunks.
///
/// Each message ends with a sync flush whose `00 00 ff ff` tail is removed. The last four
/// bytes produced are always held back until the next call, so the tail never reaches the
/// caller even when the output is cut into small chunks.
///
/// ```
/// use rbeast::proto::deflate::Deflater;
/// let mut d = Deflater::new(6, 15, false);
/// assert!(!d.is_allocated());
/// let mut out = Vec::new();
/// let mut input: &[u8] = &[b'a'; 10_000];
/// loop {
///     let p = d.compress(input, true, &mut out, 64)?; // at most 64 bytes per chunk (frame)
///     input = &input[p.consumed..];
///     if p.done { break; }
/// }
/// assert!(out.len() < 100 && d.is_allocated());
/// # Ok::<(), rbeast::Error>(())
/// ```
#[derive(Debug)]
pub struct Deflater {
    level: u32,
    mem_level: u8,
    window_bits: u8,
    no_context_takeover: bool,
    state: Option<Box<DeflateState>>,
    /// The last window of data, kept when the state may be freed between messages (see
    /// [`with_idle_release`](Deflater::with_idle_release)).
    history: Option<History>,
    /// A message has started and not ended.
    in_message: bool,
}

impl Deflater {
    /// A compressor with a zlib level (0..=9, larger is clamped), an LZ77 window (9..=15,
    /// clamped), resetting its context after each message when `no_context_takeover` (and
    /// then holding no state between messages, see
    /// [`is_allocated`](Deflater::is_allocated)), and zlib's default memory level (8; see
    /// [`with_mem_level`](Deflater::with_mem_level)).
    ///
    /// ```
    /// let d = rbeast::proto::deflate::Deflater::new(8, 15, false);
    /// # let _ = d;
    /// ```
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Deflater {
            level: level.min(9),
            mem_level: DeflateConfig::default().mem_level as u8,
            window_bits: window(window_bits),
            no_context_takeover,
            state: None,
            history: None,
            in_message: false,
        }
    }

    /// The same compressor, keeping its own copy of the last window of data it compressed
    /// (up to 2^`window_bits` bytes, growing as data flows) so that
    /// [`release_idle`](Deflater::release_idle) can free its zlib state between messages.
    /// Only a compressor with context takeover needs it; without, this changes nothing.
    ///
    /// ```
    /// use rbeast::proto::deflate::Deflater;
    /// let mut d = Deflater::new(8, 15, false).with_idle_release();
    /// let mut out = Vec::new();
    /// d.compress(b"hello", true, &mut out, 64)?;
    /// assert!(d.release_idle());
    /// assert!(!d.is_allocated());
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn with_idle_release(mut self) -> Self {
        if !self.no_context_takeover {
            self.history = Some(History::new(self.window_bits));
        }
        self
    }

    /// Frees the zlib state between messages of a compressor made
    /// [`with_idle_release`](Deflater::with_idle_release) (it goes to the thread's pool of
    /// reset states). The next message takes a state from the pool, or allocates one, and
    /// presets it with the kept window, so that it compresses as if it had never gone:
    /// what it sends only refers to data the peer's decompressor still holds. Costs about
    /// as much as compressing the window once. Returns false, doing nothing, in the middle
    /// of a message, with no state, or without the kept window.
    ///
    /// ```
    /// use rbeast::proto::deflate::{Deflater, Inflater};
    /// let mut d = Deflater::new(8, 15, false).with_idle_release();
    /// let mut i = Inflater::new(15, false); // the peer keeps its state
    /// let (mut wire, mut text) = (Vec::new(), Vec::new());
    /// d.compress(b"hello, hello", true, &mut wire, 64)?;
    /// i.inflate(&wire, true, &mut text, 100)?;
    /// assert!(d.release_idle());
    /// wire.clear();
    /// d.compress(b"hello, hello", true, &mut wire, 64)?; // refers to the first message
    /// i.inflate(&wire, true, &mut text, 100)?;
    /// assert_eq!(text, b"hello, hellohello, hello");
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn release_idle(&mut self) -> bool {
        if self.history.is_none() || self.in_message {
            return false;
        }
        if self.state.is_none() {
            return false;
        }
        self.give_back();
        true
    }

    fn key(&self) -> u32 {
        pool::deflate_key(self.level, self.mem_level, self.window_bits)
    }

    /// The same compressor with zlib's memory level `mem_level` (1..=9, clamped): the size
    /// of the buffer of symbols a block collects before it is coded, 2^(`mem_level` + 6)
    /// symbols. A smaller level takes less memory and less work per flushed message, and
    /// codes large messages in more, smaller blocks. It takes effect when the zlib state is
    /// created: at the first message, or the first after an error dropped the state.
    ///
    /// ```
    /// use rbeast::proto::deflate::Deflater;
    /// let mut d = Deflater::new(8, 15, false).with_mem_level(4); // Beast's memLevel default
    /// let mut out = Vec::new();
    /// assert!(d.compress(b"hello hello hello", true, &mut out, 64)?.done);
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn with_mem_level(mut self, mem_level: u32) -> Self {
        self.mem_level = mem_level.clamp(1, 9) as u8;
        self
    }

    /// The compressor of an endpoint of `role` after negotiating `params`: its own window
    /// and context takeover, the level and memory level from `opts`.
    ///
    /// ```
    /// use rbeast::proto::deflate::{Deflater, PermessageDeflate, PmdParams};
    /// let d = Deflater::for_role(rbeast::Role::Server, &PmdParams::default(), &PermessageDeflate::default());
    /// # let _ = d;
    /// ```
    pub fn for_role(role: Role, params: &PmdParams, opts: &PermessageDeflate) -> Self {
        match role {
            Role::Client => Deflater::new(
                opts.comp_level,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
            Role::Server => Deflater::new(
                opts.comp_level,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
        }
        .with_mem_level(opts.mem_level)
    }

    /// Whether this compressor holds a zlib state: from its first message on with context
    /// takeover (until [`release_idle`](Deflater::release_idle)); without it, only while a
    /// message is in progress (between messages the state is back in the thread's pool).
    ///
    /// ```
    /// use rbeast::proto::deflate::Deflater;
    /// let (mut keeps, mut resets) = (Deflater::new(8, 15, false), Deflater::new(8, 15, true));
    /// assert!(!keeps.is_allocated() && !resets.is_allocated());
    /// let mut out = Vec::new();
    /// keeps.compress(b"hello", true, &mut out, 64)?;
    /// resets.compress(b"hello", true, &mut out, 64)?;
    /// assert!(keeps.is_allocated() && !resets.is_allocated());
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Compresses a piece of the current message, appending at most `max_out` bytes to
    /// `out`; `last` says this piece ends the message.
    ///
    /// Call again with the unconsumed input (for the last piece, until `done`). A call may
    /// write nothing (compression latency). Errors: [`Error::InvalidArgument`] when `max_out`
    /// is below [`MIN_DEFLATE_CHUNK`], [`Error::BufferOverflow`] when `out` has less room
    /// than `max_out`.
    ///
    /// ```
    /// use rbeast::proto::deflate::Deflater;
    /// let mut d = Deflater::new(8, 15, false);
    /// let mut out = Vec::new();
    /// let p = d.compress(b"", true, &mut out, 16)?;
    /// assert!(p.done);
    /// assert_eq!(out, [0x00]); // an empty message
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn compress<B: BufMut>(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut B,
        max_out: usize,
    ) -> Result<DeflateProgress> {
        if max_out < MIN_DEFLATE_CHUNK {
            return Err(Error::InvalidArgument(ArgumentError::DeflateChunkTooSmall));
        }
        if out.remaining_mut() < max_out {
            return Err(Error::BufferOverflow);
        }
        let key = self.key();
        if self.state.is_none() {
            self.state = self.rebuilt_state(key)?;
        }
        self.in_message = true;
        let st = self.state.get_or_insert_with(|| new_deflate_state(key));
        if st.scratch.len() < max_out {
            st.scratch.resize(max_out, 0);
        }
        let held = st.held_len;
        st.scratch[..held].copy_from_slice(&st.held[..held]);
        let flush = if last {
            DeflateFlush::SyncFlush
        } else {
            DeflateFlush::NoFlush
        };
        let (in0, out0) = (st.z.total_in(), st.z.total_out());
        let compressed = st.z.compress(input, &mut st.scratch[held..max_out], flush);
        if compressed.is_err() {
            self.drop_state();
            return Err(Error::BadDeflateData);
        }
        let consumed = (st.z.total_in() - in0) as usize;
        if let Some(history) = &mut self.history {
            history.push(&input[..consumed]);
        }
        let mut n = held + (st.z.total_out() - out0) as usize;
        let all_in = consumed == input.len();
        if last && all_in && n < max_out {
            // The flush finished: the message ends with the sync-flush tail; drop it.
            if n >= 4 && st.scratch[n - 4..n] == TAIL {
                n -= 4;
            }
            if st.message_len + n == 0 {
                // zlib skips a second flush with no new input; an empty message still needs
                // its empty stored block, whose first byte is 0 (the rest is the tail).
                st.scratch[0] = 0;
                n = 1;
            }
            out.put_slice(&st.scratch[..n]);
            st.held_len = 0;
            st.message_len = 0;
            self.in_message = false;
            if self.no_context_takeover {
                self.give_back();
            }
            return Ok(DeflateProgress {
                consumed,
                written: n,
                done: true,
            });
        }
        let keep = n.min(4);
        st.held[..keep].copy_from_slice(&st.scratch[n - keep..n]);
        st.held_len = keep;
        n -= keep;
        out.put_slice(&st.scratch[..n]);
        st.message_len += n;
        Ok(DeflateProgress {
            consumed,
            written: n,
            done: !last && all_in,
        })
    }
}

impl Deflater {
    /// The state a message starts with when the compressor holds none: a reset one from
    /// the thread's pool (without context takeover, or after
    /// [`release_idle`](Deflater::release_idle)), preset with the kept window if there is
    /// one; `None` when a fresh state is to be allocated.
    fn rebuilt_state(&mut self, key: u32) -> Result<Option<Box<DeflateState>>> {
        let resumes = self.history.as_ref().is_some_and(|h| h.len() > 0);
        if !self.no_context_takeover && self.history.is_none() {
            return Ok(None);
        }
        let mut st = pool::take_deflate(key);
        if let (true, Some(history)) = (resumes, &mut self.history) {
            let st = st.get_or_insert_with(|| new_deflate_state(key));
            if st.z.set_dictionary(history.contiguous()).is_err() {
                self.drop_state();
                return Err(Error::BadDeflateData);
            }
        }
        Ok(st)
    }

    /// Resets the state, between messages, and gives it to the thread's pool.
    fn give_back(&mut self) {
        if let Some(mut st) = self.state.take() {
            st.z.reset();
            pool::give_deflate(self.key(), st);
        }
    }

    /// After an error: the state and the window it had are gone; the next message starts
    /// afresh.
    fn drop_state(&mut self) {
        self.state = None;
        self.in_message = false;
        if let Some(history) = &mut self.history {
            history.clear();
        }
    }
}

/// A newly allocated compressor for settings `key` (see [`pool::deflate_key`]).
fn new_deflate_state(key: u32) -> Box<DeflateState> {
    let (level, mem_level, bits) = pool::deflate_settings(key);
    let config = DeflateConfig {
        level: level as i32,
        window_bits: -i32::from(bits), // negative: raw deflate, no zlib header
        mem_level: i32::from(mem_level),
        ..DeflateConfig::default()
    };
    Box::new(DeflateState {
        z: Deflate::new_with_config(config),
        scratch: Vec::new(),
        held: [0; 4],
        held_len: 0,
        message_len: 0,
    })
}

/// What one [`Inflater::inflate_into`] call did.
///
/// ```
/// let p = rbeast::proto::deflate::InflateProgress::default();
/// assert!(!p.done && p.consumed == 0 && p.written == 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InflateProgress {
    /// Bytes of input consumed.
    pub consumed: usize,
    /// Bytes written at the start of the output.
    pub written: usize,
    /// For a non-last piece: all input was consumed. For the last piece: the message is
    /// complete (tail inflated, no output pending). Otherwise call again, with the rest of
    /// the input and fresh output room.
    pub done: bool,
}

struct InflateState {
    z: Inflate,
    /// Allocated by the first [`Inflater::inflate`] call only.
    scratch: Box<[u8]>,
    message_len: usize,
    ended: bool,
    /// Bytes of the `00 00 ff ff` tail consumed so far (bounded output may cut it).
    tail_fed: usize,
}

impl fmt::Debug for InflateState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InflateState")
            .field("total_in", &self.z.total_in())
            .field("total_out", &self.z.total_out())
            .field("message_len", &self.message_len)
            .field("ended", &self.ended)
            .field("tail_fed", &self.tail_fed)
            .finish_non_exhaustive()
    }
}

/// Inflates incoming compressed messages piece by piece, under a size limit.
///
/// The limit bounds the inflated size of one message: as soon as the output would pass
/// it, inflation stops with [`Error::MessageTooBig`] without appending the excess, so a
/// small "bomb" cannot make the process allocate more than the limit (plus
/// [`INFLATE_CHUNK`] of scratch).
///
/// ```
/// use rbeast::proto::deflate::{Deflater, Inflater};
/// let mut wire = Vec::new();
/// Deflater::new(9, 15, false).compress(&[0u8; 100_000], true, &mut wire, 1 << 20)?;
/// let mut out = Vec::new();
/// let err = Inflater::new(15, false).inflate(&wire, true, &mut out, 1000).unwrap_err();
/// assert_eq!(err, rbeast::Error::MessageTooBig);
/// assert!(out.len() <= 1000);
/// # Ok::<(), rbeast::Error>(())
/// ```
#[derive(Debug)]
pub struct Inflater {
    window_bits: u8,
    no_context_takeover: bool,
    state: Option<Box<InflateState>>,
    /// The last window of inflated data, kept when the state may be freed between
    /// messages (see [`with_idle_release`](Inflater::with_idle_release)).
    history: Option<History>,
    /// A message has started and not ended.
    in_message: bool,
}

impl Inflater {
    /// A decompressor for a peer window of `window_bits` (an 8 is raised to 9, which
    /// accepts the same streams), resetting after each message when `no_context_takeover`
    /// (and then holding no state between messages, see
    /// [`is_allocated`](Inflater::is_allocated)).
    ///
    /// ```
    /// let i = rbeast::proto::deflate::Inflater::new(15, false);
    /// # let _ = i;
    /// ```
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Inflater {
            window_bits: window(window_bits),
            no_context_takeover,
            state: None,
            history: None,
            in_message: false,
        }
    }

    /// The same decompressor, keeping its own copy of the last window of data it inflated
    /// (up to 2^`window_bits` bytes, growing as data flows) so that
    /// [`release_idle`](Inflater::release_idle) can free its zlib state between messages.
    /// Only a decompressor with context takeover needs it; without, this changes nothing.
    ///
    /// ```
    /// use rbeast::proto::deflate::Inflater;
    /// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]; // RFC 7692 §7.2.3.1
    /// let mut i = Inflater::new(15, false).with_idle_release();
    /// i.inflate(&hello, true, &mut Vec::new(), 100)?;
    /// assert!(i.release_idle());
    /// assert!(!i.is_allocated());
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn with_idle_release(mut self) -> Self {
        if !self.no_context_takeover {
            self.history = Some(History::new(self.window_bits));
        }
        self
    }

    /// Frees the zlib state between messages of a decompressor made
    /// [`with_idle_release`](Inflater::with_idle_release) (it goes to the thread's pool of
    /// reset states). The next message takes a state from the pool, or allocates one, and
    /// presets its window with the kept data, so that the peer's references to earlier
    /// messages resolve as before. Returns false, doing nothing, in the middle of a message,
    /// with no state, or without the kept window.
    ///
    /// ```
    /// use rbeast::proto::deflate::Inflater;
    /// // "Hello" twice from a compressor with context takeover (RFC 7692 §7.2.3.2).
    /// let mut i = Inflater::new(15, false).with_idle_release();
    /// let mut text = Vec::new();
    /// i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut text, 100)?;
    /// assert!(i.release_idle());
    /// i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut text, 100)?; // "Hello" 5 back
    /// assert_eq!(text, b"HelloHello");
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn release_idle(&mut self) -> bool {
        if self.history.is_none() || self.in_message {
            return false;
        }
        if self.state.is_none() {
            return false;
        }
        self.give_back();
        true
    }

    /// The decompressor of an endpoint of `role`: the peer's window and context takeover.
    ///
    /// ```
    /// use rbeast::proto::deflate::{Inflater, PmdParams};
    /// let i = Inflater::for_role(rbeast::Role::Client, &PmdParams::default());
    /// # let _ = i;
    /// ```
    pub fn for_role(role: Role, params: &PmdParams) -> Self {
        match role {
            Role::Client => Inflater::new(
                params.server_max_window_bits,
                params.server_no_context_takeover,
            ),
            Role::Server => Inflater::new(
                params.client_max_window_bits,
                params.client_no_context_takeover,
            ),
        }
    }

    /// Whether this decompressor holds a zlib state: from its first message on with
    /// context takeover (until [`release_idle`](Inflater::release_idle)); without it, only
    /// while a message is in progress (between messages the state is back in the thread's
    /// pool). An error drops the state.
    ///
    /// ```
    /// use rbeast::proto::deflate::Inflater;
    /// let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]; // RFC 7692 §7.2.3.1
    /// let (mut keeps, mut resets) = (Inflater::new(15, false), Inflater::new(15, true));
    /// assert!(!keeps.is_allocated() && !resets.is_allocated());
    /// keeps.inflate(&hello, true, &mut Vec::new(), 100)?;
    /// resets.inflate(&hello, true, &mut Vec::new(), 100)?;
    /// assert!(keeps.is_allocated() && !resets.is_allocated());
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Inflates a piece of the current message (payload bytes of a compressed frame),
    /// appending to `out`; `last` says the piece ends the message (the `00 00 ff ff` tail
    /// is then inflated too). `limit` is the largest inflated size of the whole message.
    ///
    /// Returns the number of bytes appended. Errors: [`Error::BadDeflateData`] for corrupt
    /// data, [`Error::MessageTooBig`] past `limit`, [`Error::BufferOverflow`] when `out`
    /// cannot grow. After an error the state is dropped (the next message starts fresh).
    ///
    /// ```
    /// use rbeast::proto::deflate::Inflater;
    /// let mut out = Vec::new();
    /// // "Hello" compressed without context takeover (RFC 7692 §7.2.3.1).
    /// let n = Inflater::new(15, true).inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], true, &mut out, 100)?;
    /// assert_eq!((n, &out[..]), (5, &b"Hello"[..]));
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn inflate<B: BufMut>(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut B,
        limit: usize,
    ) -> Result<usize> {
        let (st, mut history) = self.parts()?;
        if st.scratch.is_empty() {
            st.scratch = vec![0; INFLATE_CHUNK].into_boxed_slice();
        }
        let mut written = 0;
        let mut result = run(
            st,
            &mut history,
            input,
            InflateFlush::NoFlush,
            out,
            limit,
            &mut written,
        );
        if result.is_ok() && last && !st.ended {
            result = run(
                st,
                &mut history,
                &TAIL,
                InflateFlush::SyncFlush,
                out,
                limit,
                &mut written,
            );
        }
        match result {
            Ok(()) => {
                if last {
                    self.end_message();
                }
                Ok(written)
            }
            Err(e) => {
                self.drop_state();
                Err(e)
            }
        }
    }

    /// The state for the next piece, and the kept window. A decompressor holding no state
    /// takes a reset one from the thread's pool (without context takeover, or after
    /// [`release_idle`](Inflater::release_idle)), or allocates one; after a release the
    /// kept window is its preset dictionary.
    fn parts(&mut self) -> Result<(&mut InflateState, Option<&mut History>)> {
        let bits = self.window_bits;
        self.in_message = true;
        if self.state.is_none() {
            if self.no_context_takeover || self.history.is_some() {
                self.state = pool::take_inflate(bits);
            }
            if let Some(history) = self.history.as_mut().filter(|h| h.len() > 0) {
                let st = self.state.get_or_insert_with(|| new_inflate_state(bits));
                if st.z.set_dictionary(history.contiguous()).is_err() {
                    self.drop_state();
                    return Err(Error::BadDeflateData);
                }
            }
        }
        let st = self.state.get_or_insert_with(|| new_inflate_state(bits));
        Ok((st, self.history.as_mut()))
    }

    /// The message ended: a decompressor without context takeover, or one whose peer
    /// ended its stream with a final block, starts the next message afresh.
    fn end_message(&mut self) {
        self.in_message = false;
        let Some(st) = self.state.as_mut() else {
            return;
        };
        st.message_len = 0;
        st.tail_fed = 0;
        if self.no_context_takeover {
            self.give_back();
        } else if st.ended {
            st.z.reset(false);
            st.ended = false;
            if let Some(history) = &mut self.history {
                history.clear();
            }
        }
    }

    /// Resets the state, between messages, and gives it to the thread's pool.
    fn give_back(&mut self) {
        if let Some(mut st) = self.state.take() {
            st.z.reset(false);
            st.ended = false;
            pool::give_inflate(self.window_bits, st);
        }
    }

    /// After an error: the state and the window it had are gone; the next message starts
    /// afresh.
    fn drop_state(&mut self) {
        self.state = None;
        self.in_message = false;
        if let Some(history) = &mut self.history {
            history.clear();
        }
    }

    /// Inflates a piece of the current message into `out`, writing at most `out.len()`
    /// bytes and consuming only the input that room allows; `last` says the piece ends the
    /// message (the `00 00 ff ff` tail is then inflated too). `limit` is the largest
    /// inflated size of the whole message.
    ///
    /// Unlike [`inflate`](Inflater::inflate) this bounds the output of each call (a read
    /// with a size limit) and needs no scratch buffer: call again with the unconsumed input
    /// and fresh room until `done`. Output left inside the decompressor when a non-last
    /// piece is done comes out with the next piece. Errors:
    /// [`Error::BadDeflateData`] for corrupt data, [`Error::MessageTooBig`] past `limit`
    /// (bytes past it may have been written to `out`, but are not counted in any
    /// progress), [`Error::InvalidArgument`] for an empty `out`. After an error the state is
    /// dropped.
    ///
    /// ```
    /// use rbeast::proto::deflate::Inflater;
    /// let wire = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]; // "Hello"
    /// let mut i = Inflater::new(15, true);
    /// let mut out = [0u8; 2];
    /// let mut input = &wire[..];
    /// let mut text = Vec::new();
    /// loop {
    ///     let p = i.inflate_into(input, true, &mut out, 100)?;
    ///     input = &input[p.consumed..];
    ///     text.extend_from_slice(&out[..p.written]);
    ///     if p.done { break; }
    /// }
    /// assert_eq!(text, b"Hello");
    /// # Ok::<(), rbeast::Error>(())
    /// ```
    pub fn inflate_into(
        &mut self,
        input: &[u8],
        last: bool,
        out: &mut [u8],
        limit: usize,
    ) -> Result<InflateProgress> {
        if out.is_empty() {
            return Err(Error::InvalidArgument(ArgumentError::NoRoomToInflate));
        }
        let (st, history) = self.parts()?;
        match bounded(st, input, last, out, limit) {
            Ok(p) => {
                if let Some(history) = history {
                    history.push(&out[..p.written]);
                }
                if last && p.done {
                    self.end_message();
                }
                Ok(p)
            }
            Err(e) => {
                self.drop_state();
                Err(e)
            }
        }
    }
}

/// A newly allocated decompressor for a window of `window_bits`.
fn new_inflate_state(window_bits: u8) -> Box<InflateState> {
    Box::new(InflateState {
        z: Inflate::new(false, window_bits),
        scratch: Box::default(),
        message_len: 0,
        ended: false,
        tail_fed: 0,
    })
}

/// One decompression call into `out[*written..]`, with the limit check. Returns the input
/// consumed and whether the output was not full when it returned.
fn bounded_step(
    st: &mut InflateState,
    input: &[u8],
    flush: InflateFlush,
    out: &mut [u8],
    limit: usize,
    written: &mut usize,
) -> Result<(usize, usize)> {
    let (in0, out0) = (st.z.total_in(), st.z.total_out());
    let status =
        st.z.decompress(input, &mut out[*written..], flush)
            .map_err(|_| Error::BadDeflateData)?;
    let consumed = (st.z.total_in() - in0) as usize;
    let produced = (st.z.total_out() - out0) as usize;
    if produced > limit.saturating_sub(st.message_len) {
        return Err(Error::MessageTooBig);
    }
    st.message_len += produced;
    *written += produced;
    if status == Status::StreamEnd {
        st.ended = true;
    }
    Ok((consumed, produced))
}

fn bounded(
    st: &mut InflateState,
    input: &[u8],
    last: bool,
    out: &mut [u8],
    limit: usize,
) -> Result<InflateProgress> {
    let mut pos = 0;
    let mut written = 0;
    while !st.ended && pos < input.len() && written < out.len() {
        let (consumed, produced) = bounded_step(
            st,
            &input[pos..],
            InflateFlush::NoFlush,
            out,
            limit,
            &mut written,
        )?;
        pos += consumed;
        if consumed == 0 && produced == 0 {
            break;
        }
    }
    if st.ended {
        // A final block: the rest of this message is ignored.
        pos = input.len();
    }
    let mut done = pos == input.len();
    if last && done {
        done = false;
        loop {
            if st.ended {
                done = true;
                break;
            }
            if written == out.len() {
                break; // more room needed to know whether output is pending
            }
            let room_before = out.len() - written;
            let (consumed, produced) = bounded_step(
                st,
                &TAIL[st.tail_fed..],
                InflateFlush::SyncFlush,
                out,
                limit,
                &mut written,
            )?;
            st.tail_fed += consumed;
            if st.tail_fed == TAIL.len() && produced < room_before {
                // All input in and room left over: nothing is pending.
                done = true;
                break;
            }
            if consumed == 0 && produced == 0 {
                // Room, input, and no progress: the stream cannot take the tail.
                return Err(Error::BadDeflateData);
            }
        }
    }
    Ok(InflateProgress {
        consumed: pos,
        written,
        done,
    })
}

fn run<B: BufMut>(
    st: &mut InflateState,
    history: &mut Option<&mut History>,
    input: &[u8],
    flush: InflateFlush,
    out: &mut B,
    limit: usize,
    written: &mut usize,
) -> Result<()> {
    let mut pos = 0;
    while !st.ended {
        let (in0, out0) = (st.z.total_in(), st.z.total_out());
        let status =
            st.z.decompress(&input[pos..], &mut st.scratch, flush)
                .map_err(|_| Error::BadDeflateData)?;
        let consumed = (st.z.total_in() - in0) as usize;
        let produced = (st.z.total_out() - out0) as usize;
        pos += consumed;
        if produced > 0 {
            if produced > limit.saturating_sub(st.message_len) {
                return Err(Error::MessageTooBig);
            }
            if out.remaining_mut() < produced {
                return Err(Error::BufferOverflow);
            }
            out.put_slice(&st.scratch[..produced]);
            if let Some(history) = history {
                history.push(&st.scratch[..produced]);
            }
            st.message_len += produced;
            *written += produced;
        }
        if status == Status::StreamEnd {
            // A final block: the rest of this message is ignored and the next message
            // starts a new stream.
            st.ended = true;
        } else if (pos == input.len() && produced < st.scratch.len())
            || (consumed == 0 && produced == 0)
        {
            break;
        }
    }
    Ok(())
}

mod history;
mod pool;

use history::History;

#[cfg(test)]
mod idle_release_tests;
#[cfg(test)]
mod tests;
