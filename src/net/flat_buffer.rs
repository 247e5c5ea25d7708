//! `FlatBuffer`: Beast's `flat_buffer`, as a shared handle over `BytesMut`.

use std::cell::{Ref, RefCell, RefMut};
use std::io;
use std::mem::MaybeUninit;
use std::rc::Rc;

use bytes::{Buf, Bytes, BytesMut};

use crate::Error;

/// The least room a buffer grows by: small messages then reuse one allocation for several
/// reads, as Beast's default read size (512 bytes) does, instead of reclaiming it each time.
const MIN_GROWTH: usize = 512;

/// How many appends of the size that made a buffer allocate its new storage have room in
/// it. A message taken with [`FlatBuffer::take`] and written without a copy (the stream
/// writes payloads of 1 KiB or more from the caller's `Bytes`) holds the storage until it
/// leaves, usually at the end of the loop turn, so the next message read before then cannot
/// reuse it: with room for several, an echo allocates once per several messages instead of
/// once per message.
const GROWTH_MESSAGES: usize = 4;

/// The most room [`GROWTH_MESSAGES`] asks for: 64 KiB, what a stream's output holds by
/// default before it is written at once. Larger messages get room for one.
const SEVERAL_MESSAGES_MAX: usize = 64 * 1024;

struct Inner {
    /// `buf[..readable]` is the readable data; `buf[readable..]` is initialised spare room
    /// handed out by `prepare`, kept so that repeated reads do not re-zero it.
    buf: BytesMut,
    readable: usize,
    max_size: usize,
}

/// A growable buffer of readable bytes with a bound (Beast's `flat_buffer`).
///
/// It is a cheap, clonable handle: operations append to it and the application reads from
/// it, so a session keeps one and passes it to each read. Reads that would grow it past
/// [`max_size`](FlatBuffer::max_size) fail with [`Error::BufferOverflow`].
///
/// ```
/// use rbeast::net::FlatBuffer;
/// let b = FlatBuffer::new();
/// b.extend_from_slice(b"hello world").unwrap();
/// b.consume(6);
/// assert_eq!(&*b.data(), b"world");
/// let taken = b.take(); // zero-copy
/// assert_eq!(&taken[..], b"world");
/// assert_eq!(b.size(), 0);
/// ```
#[derive(Clone)]
pub struct FlatBuffer {
    inner: Rc<RefCell<Inner>>,
}

impl Default for FlatBuffer {
    fn default() -> Self {
        FlatBuffer::new()
    }
}

impl std::fmt::Debug for FlatBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatBuffer")
            .field("size", &self.size())
            .field("max_size", &self.max_size())
            .finish()
    }
}

impl Inner {
    /// `Ok` when `n` more readable bytes stay within `max_size`.
    #[inline(always)]
    fn check_room(&self, n: usize) -> Result<(), Error> {
        if n > self.max_size - self.readable {
            return Err(Error::BufferOverflow);
        }
        Ok(())
    }

    /// [`check_room`](Inner::check_room), then [`make_room`](Inner::make_room).
    #[inline(always)]
    fn reserve(&mut self, n: usize) -> Result<(), Error> {
        self.check_room(n)?;
        self.make_room(n);
        Ok(())
    }

    /// Drops the prepared room and ensures room for `n` more readable bytes.
    #[inline(always)]
    fn make_room(&mut self, n: usize) {
        self.buf.truncate(self.readable);
        if self.buf.capacity() - self.readable < n {
            self.grow(n);
        }
    }

    /// Reserves room for `n` more bytes: the storage is reused when nothing else holds it,
    /// else a new one is allocated with room for `GROWTH_MESSAGES` appends of this size (at
    /// most `SEVERAL_MESSAGES_MAX`, at least `MIN_GROWTH`). Out of line, as most appends
    /// find room already.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, n: usize) {
        if self.buf.try_reclaim(n) {
            return;
        }
        let several = n.saturating_mul(GROWTH_MESSAGES).min(SEVERAL_MESSAGES_MAX);
        self.buf.reserve(n.max(MIN_GROWTH).max(several));
    }
}

/// What [`FlatBuffer::append_uninit`] calls to write into the room it reserved: a closure,
/// or a type whose `fill` is always inlined into the caller (a closure's body may not be).
pub(crate) trait Fill {
    /// Writes into `dst`; returns how many bytes (from its start) it initialised.
    fn fill(self, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
}

impl<F: FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize>> Fill for F {
    #[inline(always)]
    fn fill(self, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        self(dst)
    }
}

impl FlatBuffer {
    /// An empty buffer with no bound beyond memory (`max_size` = `usize::MAX`).
    ///
    /// ```
    /// assert_eq!(rbeast::net::FlatBuffer::new().size(), 0);
    /// ```
    pub fn new() -> FlatBuffer {
        FlatBuffer::with_max_size(usize::MAX)
    }

    /// An empty buffer that never holds more than `max_size` readable bytes.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::with_max_size(4);
    /// assert!(b.extend_from_slice(b"12345").is_err());
    /// ```
    pub fn with_max_size(max_size: usize) -> FlatBuffer {
        FlatBuffer {
            inner: Rc::new(RefCell::new(Inner {
                buf: BytesMut::new(),
                readable: 0,
                max_size,
            })),
        }
    }

    /// The readable bytes. Do not hold the returned guard across an operation on the buffer.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"ab").unwrap();
    /// assert_eq!(&*b.data(), b"ab");
    /// ```
    pub fn data(&self) -> Ref<'_, [u8]> {
        Ref::map(self.inner.borrow(), |i| &i.buf[..i.readable])
    }

    /// The number of readable bytes.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"abc").unwrap();
    /// assert_eq!(b.size(), 3);
    /// ```
    pub fn size(&self) -> usize {
        self.inner.borrow().readable
    }

    /// Bytes the buffer can hold without allocating.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.reserve(100).unwrap();
    /// assert!(b.capacity() >= 100);
    /// ```
    pub fn capacity(&self) -> usize {
        self.inner.borrow().buf.capacity()
    }

    /// The bound on readable bytes.
    ///
    /// ```
    /// assert_eq!(rbeast::net::FlatBuffer::with_max_size(9).max_size(), 9);
    /// ```
    pub fn max_size(&self) -> usize {
        self.inner.borrow().max_size
    }

    /// Makes room for `n` more readable bytes without committing them.
    ///
    /// # Errors
    /// [`Error::BufferOverflow`] when `size + n` exceeds `max_size`.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::with_max_size(10);
    /// assert!(b.reserve(10).is_ok());
    /// assert_eq!(b.reserve(11), Err(rbeast::Error::BufferOverflow));
    /// ```
    pub fn reserve(&self, n: usize) -> Result<(), Error> {
        self.inner.borrow_mut().reserve(n)
    }

    /// Returns a writable area of exactly `n` bytes after the readable bytes (Beast's
    /// `prepare`). Bytes written there become readable with [`commit`](FlatBuffer::commit).
    ///
    /// # Errors
    /// [`Error::BufferOverflow`] when `size + n` exceeds `max_size`.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.prepare(3).unwrap().copy_from_slice(b"xyz");
    /// b.commit(2);
    /// assert_eq!(&*b.data(), b"xy");
    /// ```
    pub fn prepare(&self, n: usize) -> Result<RefMut<'_, [u8]>, Error> {
        let mut i = self.inner.borrow_mut();
        i.check_room(n)?;
        let end = i.readable + n;
        if i.buf.len() < end {
            i.buf.resize(end, 0);
        }
        Ok(RefMut::map(i, |i| &mut i.buf[i.readable..end]))
    }

    /// Appends up to `n` bytes written by `read` into uninitialised room after the readable
    /// bytes; `read` returns how many it wrote. The room is reserved, never zero-filled.
    ///
    /// # Safety
    /// When `read` returns `Ok(k)`, it must have initialised the first `k` bytes of the
    /// slice it was given (and `k` is at most its length).
    #[inline(always)]
    pub(crate) unsafe fn append_uninit(
        &self,
        n: usize,
        read: impl Fill,
    ) -> Result<io::Result<usize>, Error> {
        let mut i = self.inner.borrow_mut();
        i.reserve(n)?;
        let readable = i.readable;
        let result = read.fill(&mut i.buf.spare_capacity_mut()[..n]);
        if let Ok(k) = result {
            let k = k.min(n);
            // SAFETY: the caller guarantees that `read` initialised the first `k` bytes of
            // the spare capacity, which starts at `readable` (the current length).
            unsafe { i.buf.set_len(readable + k) };
            i.readable += k;
        }
        Ok(result)
    }

    /// Appends `n` bytes that `fill` writes into uninitialised room after the readable
    /// bytes, with one borrow (the read path's unmasking copy of each payload).
    ///
    /// # Errors
    /// [`Error::BufferOverflow`] when the result would exceed `max_size`; `fill` is not
    /// called.
    ///
    /// # Safety
    /// `fill` must initialise every byte of the slice it is given.
    #[inline(always)]
    pub(crate) unsafe fn append_filled(
        &self,
        n: usize,
        fill: impl FnOnce(&mut [MaybeUninit<u8>]),
    ) -> Result<(), Error> {
        // SAFETY: `fill` initialises all `n` bytes it is given (the caller's guarantee),
        // and the closure reports exactly those `n`.
        let appended = unsafe {
            self.append_uninit(n, |dst: &mut [MaybeUninit<u8>]| {
                fill(dst);
                Ok(n)
            })
        };
        appended.map(|_| ())
    }

    /// The last `n` readable bytes, for transforming in place (unmasking).
    pub(crate) fn last_mut(&self, n: usize) -> RefMut<'_, [u8]> {
        RefMut::map(self.inner.borrow_mut(), |i| {
            let end = i.readable;
            &mut i.buf[end - n.min(end)..end]
        })
    }

    /// Removes the last `n` readable bytes (appended by an operation that then failed).
    pub(crate) fn drop_last(&self, n: usize) {
        let mut i = self.inner.borrow_mut();
        let keep = i.readable - n.min(i.readable);
        i.readable = keep;
        i.buf.truncate(keep);
    }

    /// Makes `n` prepared bytes readable (at most what the last `prepare` handed out).
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.prepare(4).unwrap().copy_from_slice(b"abcd");
    /// b.commit(4);
    /// assert_eq!(b.size(), 4);
    /// ```
    pub fn commit(&self, n: usize) {
        let mut i = self.inner.borrow_mut();
        let room = i.buf.len() - i.readable;
        i.readable += n.min(room);
    }

    /// Discards the first `n` readable bytes.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"abcd").unwrap();
    /// b.consume(3);
    /// assert_eq!(&*b.data(), b"d");
    /// ```
    pub fn consume(&self, n: usize) {
        let mut i = self.inner.borrow_mut();
        let n = n.min(i.readable);
        i.buf.advance(n);
        i.readable -= n;
    }

    /// Discards every readable byte.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"abcd").unwrap();
    /// b.clear();
    /// assert_eq!(b.size(), 0);
    /// ```
    pub fn clear(&self) {
        let n = self.size();
        self.consume(n);
    }

    /// Appends bytes.
    ///
    /// # Errors
    /// [`Error::BufferOverflow`] when the result would exceed `max_size`; nothing is appended.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"abc").unwrap();
    /// assert_eq!(b.size(), 3);
    /// ```
    #[inline]
    pub fn extend_from_slice(&self, bytes: &[u8]) -> Result<(), Error> {
        self.append(bytes)
    }

    /// [`extend_from_slice`](FlatBuffer::extend_from_slice), always inlined: the read path
    /// appends every message it delivers whole with it.
    #[inline(always)]
    pub(crate) fn append(&self, bytes: &[u8]) -> Result<(), Error> {
        // SAFETY: the copy initialises every byte it is given (`dst` is `bytes.len()` long,
        // and a fresh borrow of spare capacity cannot overlap `bytes`).
        unsafe {
            self.append_filled(bytes.len(), |dst| {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst.as_mut_ptr().cast(), dst.len())
            })
        }
    }

    /// Takes the readable bytes out as `Bytes`, without copying; the buffer becomes empty.
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"msg").unwrap();
    /// let m = b.take();
    /// assert_eq!(&m[..], b"msg");
    /// assert_eq!(b.size(), 0);
    /// ```
    #[inline]
    pub fn take(&self) -> Bytes {
        let mut i = self.inner.borrow_mut();
        let n = i.readable;
        i.readable = 0;
        i.buf.split_to(n).freeze()
    }

    /// A copy of the readable bytes as a `String`, replacing invalid UTF-8 (Beast's
    /// `buffers_to_string`, handy in examples and tests).
    ///
    /// ```
    /// let b = rbeast::net::FlatBuffer::new();
    /// b.extend_from_slice(b"text").unwrap();
    /// assert_eq!(b.to_string_lossy(), "text");
    /// ```
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.data()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_commit_consume_cycle_keeps_order() {
        let b = FlatBuffer::with_max_size(16);
        for round in 0..100u8 {
            {
                let mut area = b.prepare(4).unwrap();
                area.copy_from_slice(&[round; 4]);
            }
            b.commit(4);
            assert_eq!(b.size(), 4);
            assert_eq!(&*b.data(), &[round; 4]);
            b.consume(4);
        }
        assert_eq!(b.size(), 0);
    }

    #[test]
    fn bound_is_enforced_and_nothing_is_appended_on_overflow() {
        let b = FlatBuffer::with_max_size(5);
        b.extend_from_slice(b"abc").unwrap();
        assert_eq!(b.extend_from_slice(b"def"), Err(Error::BufferOverflow));
        assert_eq!(&*b.data(), b"abc");
        assert!(b.prepare(3).is_err());
        assert!(b.prepare(2).is_ok());
    }

    #[test]
    fn commit_never_exceeds_prepared_room() {
        let b = FlatBuffer::new();
        b.prepare(2).unwrap().copy_from_slice(b"ab");
        b.commit(100);
        assert_eq!(&*b.data(), b"ab");
    }

    #[test]
    fn small_messages_taken_one_by_one_share_one_allocation() {
        let b = FlatBuffer::new();
        b.extend_from_slice(&[1; 64]).unwrap();
        assert!(b.capacity() >= MIN_GROWTH);
        let first = b.take();
        let base = first.as_ptr();
        drop(first);
        for i in 1..MIN_GROWTH / 64 {
            b.extend_from_slice(&[i as u8; 64]).unwrap();
            let m = b.take();
            assert_eq!(m.as_ptr(), base.wrapping_add(64 * i), "message {i}");
            assert_eq!(&m[..], &[i as u8; 64]);
        }
    }

    #[test]
    fn messages_taken_and_still_held_share_an_allocation_of_several() {
        const LEN: usize = 16 * 1024;
        let b = FlatBuffer::new();
        let mut held = Vec::new();
        for i in 0..GROWTH_MESSAGES {
            b.extend_from_slice(&[i as u8; LEN]).unwrap();
            held.push(b.take());
        }
        let base = held[0].as_ptr();
        for (i, m) in held.iter().enumerate() {
            assert_eq!(m.as_ptr(), base.wrapping_add(LEN * i), "message {i}");
            assert_eq!(&m[..], &[i as u8; LEN][..]);
        }
        // The storage is full and still held: the next message needs new storage.
        b.extend_from_slice(&[9; LEN]).unwrap();
        let fifth = b.take();
        assert!(!std::ptr::eq(
            fifth.as_ptr(),
            base.wrapping_add(LEN * GROWTH_MESSAGES)
        ));
        assert_eq!(b.capacity(), LEN * (GROWTH_MESSAGES - 1));
        // Once nothing holds it, the storage is reused rather than replaced.
        let second = fifth.as_ptr();
        drop(fifth);
        for i in 1..GROWTH_MESSAGES {
            b.extend_from_slice(&[i as u8; LEN]).unwrap();
            assert_eq!(
                b.take().as_ptr(),
                second.wrapping_add(LEN * i),
                "message {i}"
            );
        }
        assert_eq!(b.capacity(), 0);
        b.extend_from_slice(&[8; LEN]).unwrap();
        assert_eq!(b.data().as_ptr(), second);
        assert_eq!(&held[1][..], &[1; LEN][..]);
    }

    #[test]
    fn large_messages_get_room_for_one() {
        let b = FlatBuffer::new();
        b.extend_from_slice(&vec![1; SEVERAL_MESSAGES_MAX]).unwrap();
        assert!(b.capacity() < 2 * SEVERAL_MESSAGES_MAX);
    }

    #[test]
    fn take_leaves_an_empty_usable_buffer() {
        let b = FlatBuffer::new();
        b.extend_from_slice(b"one").unwrap();
        let one = b.take();
        b.extend_from_slice(b"two").unwrap();
        assert_eq!(&one[..], b"one");
        assert_eq!(&*b.data(), b"two");
    }
}
