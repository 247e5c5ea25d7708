//! Completion handlers stored inline when they are small, so that starting a read or a write
//! allocates nothing.
//!
//! A handler that captures a few handles (a stream, a buffer, a session), and a write's
//! buffers together with such a handler, fit in a few words: they are kept in place in the
//! operation and in the ready queue. Larger ones are boxed, and the box is kept in place.
//! A handler alone gets less room than a write job: it is what the ready queue moves, so
//! its size is the size of every queued record.

use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};

use bytes::Buf;

use crate::Error;

/// Words of inline room of a handler: enough for one capturing four handles.
const HANDLER_WORDS: usize = 4;

/// Words of inline room of a write job: enough for a `Bytes` and a handler capturing two
/// handles.
const WRITE_WORDS: usize = 6;

type Storage<const W: usize> = [MaybeUninit<usize>; W];

/// True when a `T` can be kept in a `Storage<W>` itself.
const fn fits<T, const W: usize>() -> bool {
    mem::size_of::<T>() <= mem::size_of::<Storage<W>>()
        && mem::align_of::<T>() <= mem::align_of::<Storage<W>>()
}

/// What an operation kept inline does when it completes.
trait Operation: 'static {
    fn complete(self, result: Result<(), Error>, n: usize);
    /// The buffers still to be written (write jobs only).
    fn data(&mut self) -> Option<&mut (dyn Buf + 'static)>;
    /// What is left to run once the operation has ended: its handler alone (a write job's
    /// buffers are dropped here).
    fn into_handler(self) -> IoHandler;
}

/// A handler alone.
struct Handler<F>(F);

impl<F: FnOnce(Result<(), Error>, usize) + 'static> Operation for Handler<F> {
    fn complete(self, result: Result<(), Error>, n: usize) {
        (self.0)(result, n)
    }

    fn data(&mut self) -> Option<&mut (dyn Buf + 'static)> {
        None
    }

    fn into_handler(self) -> IoHandler {
        IoHandler::new(self.0)
    }
}

/// A write's buffers and its handler.
struct Write<B, H> {
    data: B,
    handler: H,
}

impl<B, H> Operation for Write<B, H>
where
    B: Buf + 'static,
    H: FnOnce(Result<(), Error>, usize) + 'static,
{
    fn complete(self, result: Result<(), Error>, n: usize) {
        let Write { data, handler } = self;
        // The buffers go before the handler runs, as the operation has ended.
        drop(data);
        handler(result, n);
    }

    fn data(&mut self) -> Option<&mut (dyn Buf + 'static)> {
        Some(&mut self.data)
    }

    fn into_handler(self) -> IoHandler {
        let Write { data, handler } = self;
        // The buffers go now, as the operation has ended.
        drop(data);
        IoHandler::new(handler)
    }
}

/// Too large to be kept inline: boxed, with the box kept inline.
impl<T: Operation> Operation for Box<T> {
    fn complete(self, result: Result<(), Error>, n: usize) {
        (*self).complete(result, n)
    }

    fn data(&mut self) -> Option<&mut (dyn Buf + 'static)> {
        (**self).data()
    }

    fn into_handler(self) -> IoHandler {
        (*self).into_handler()
    }
}

/// The functions of one operation type, called on its inline storage (of any size).
struct VTable {
    complete: unsafe fn(*mut (), Result<(), Error>, usize),
    drop: unsafe fn(*mut ()),
    data: unsafe fn(*mut ()) -> Option<*mut (dyn Buf + 'static)>,
    into_handler: unsafe fn(*mut ()) -> IoHandler,
}

/// # Safety
/// `storage` holds a `T`, which this moves out: it must not be used or dropped again.
unsafe fn complete<T: Operation>(storage: *mut (), result: Result<(), Error>, n: usize) {
    // SAFETY: per the contract, `storage` holds a valid `T` (aligned, see `fits`) that
    // nobody reads after this.
    let op = unsafe { storage.cast::<T>().read() };
    op.complete(result, n);
}

/// # Safety
/// `storage` holds a `T`, which this drops: it must not be used or dropped again.
unsafe fn drop_op<T>(storage: *mut ()) {
    // SAFETY: per the contract.
    unsafe { storage.cast::<T>().drop_in_place() }
}

/// # Safety
/// `storage` holds a `T`, not otherwise borrowed while the result is used.
unsafe fn data<T: Operation>(storage: *mut ()) -> Option<*mut (dyn Buf + 'static)> {
    // SAFETY: per the contract.
    unsafe {
        (*storage.cast::<T>())
            .data()
            .map(|b| b as *mut (dyn Buf + 'static))
    }
}

/// # Safety
/// `storage` holds a `T`, which this moves out: it must not be used or dropped again.
unsafe fn into_handler<T: Operation>(storage: *mut ()) -> IoHandler {
    // SAFETY: per the contract.
    unsafe { storage.cast::<T>().read() }.into_handler()
}

/// An operation (a handler, or a write's buffers and handler) kept inline in `W` words
/// when it fits.
struct InlineOp<const W: usize> {
    storage: Storage<W>,
    vtable: &'static VTable,
    /// Handlers need not be `Send`: neither is this.
    _not_send: PhantomData<*mut ()>,
}

impl<const W: usize> InlineOp<W> {
    fn new<T: Operation>(op: T) -> Self {
        if fits::<T, W>() {
            Self::store(op)
        } else {
            Self::store(Box::new(op))
        }
    }

    fn store<T: Operation>(op: T) -> Self {
        assert!(fits::<T, W>(), "only called for types that fit");
        let mut storage: Storage<W> = [MaybeUninit::uninit(); W];
        // SAFETY: `fits` guarantees that a `T` fits in the storage and that the storage is
        // aligned for it; the storage is new, so nothing is overwritten.
        unsafe { storage.as_mut_ptr().cast::<T>().write(op) };
        InlineOp {
            storage,
            vtable: const {
                &VTable {
                    complete: complete::<T>,
                    drop: drop_op::<T>,
                    data: data::<T>,
                    into_handler: into_handler::<T>,
                }
            },
            _not_send: PhantomData,
        }
    }

    fn storage(&mut self) -> *mut () {
        self.storage.as_mut_ptr().cast()
    }

    fn complete(self, result: Result<(), Error>, n: usize) {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: the storage holds the type the vtable was made for; `me` is never dropped,
        // so the value moved out by `complete` is not dropped again.
        unsafe { (me.vtable.complete)(me.storage(), result, n) }
    }

    /// # Safety
    /// `this` points to a valid operation that nothing uses or drops after this call: the
    /// operation is moved out of its storage before anything else runs, after which the
    /// memory may be reused.
    unsafe fn complete_in_place(this: *mut Self, result: Result<(), Error>, n: usize) {
        // SAFETY: per the contract, the storage holds the type the vtable was made for, and
        // the value `complete` moves out is not dropped again.
        unsafe { ((*this).vtable.complete)((&raw mut (*this).storage).cast(), result, n) }
    }

    fn data(&mut self) -> Option<&mut (dyn Buf + 'static)> {
        // SAFETY: the storage holds the type the vtable was made for; the pointer it returns
        // points into it, borrowed mutably through `self` for the lifetime of the result.
        unsafe { (self.vtable.data)(self.storage()).map(|b| &mut *b) }
    }

    fn into_handler(self) -> IoHandler {
        let mut me = ManuallyDrop::new(self);
        // SAFETY: as in `complete`.
        unsafe { (me.vtable.into_handler)(me.storage()) }
    }
}

impl<const W: usize> Drop for InlineOp<W> {
    fn drop(&mut self) {
        // SAFETY: the storage holds the type the vtable was made for, dropped only here.
        unsafe { (self.vtable.drop)(self.storage()) }
    }
}

/// A handler completing an I/O operation: `(result, bytes_transferred)`.
pub(crate) struct IoHandler(InlineOp<HANDLER_WORDS>);

impl IoHandler {
    /// Keeps `handler` inline when it is small, boxed otherwise.
    pub(crate) fn new(handler: impl FnOnce(Result<(), Error>, usize) + 'static) -> IoHandler {
        IoHandler(InlineOp::new(Handler(handler)))
    }

    /// Runs the handler (and drops what it was kept with first, for a write job).
    pub(crate) fn call(self, result: Result<(), Error>, n: usize) {
        self.0.complete(result, n)
    }

    /// Runs the handler where it lies, without moving the whole handler out first.
    ///
    /// # Safety
    /// `this` points to a valid handler that nothing uses or drops after this call; its
    /// memory may be reused once the handler has started (the handler is moved out of it
    /// before any of its code runs).
    pub(crate) unsafe fn call_in_place(this: *mut IoHandler, result: Result<(), Error>, n: usize) {
        // SAFETY: per the contract.
        unsafe { InlineOp::complete_in_place(&raw mut (*this).0, result, n) }
    }
}

/// A write's buffers and its handler, kept together (inline when small).
pub(crate) struct WriteJob(InlineOp<WRITE_WORDS>);

impl WriteJob {
    /// Keeps `data` and `handler` together, inline when they are small.
    pub(crate) fn new<B, H>(data: B, handler: H) -> WriteJob
    where
        B: Buf + 'static,
        H: FnOnce(Result<(), Error>, usize) + 'static,
    {
        WriteJob(InlineOp::new(Write { data, handler }))
    }

    /// The caller's buffers (what is left of them).
    pub(crate) fn data(&mut self) -> &mut dyn Buf {
        self.0.data().expect("a write job always holds its buffers")
    }

    /// The handler to complete; the buffers are dropped here, before it runs.
    pub(crate) fn into_handler(self) -> IoHandler {
        self.0.into_handler()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn small_and_large_handlers_run_once_and_drop_what_they_captured() {
        let ran = Rc::new(Cell::new(0));
        let small = {
            let ran = ran.clone();
            IoHandler::new(move |r, n| {
                assert_eq!((r, n), (Ok(()), 3));
                ran.set(ran.get() + 1);
            })
        };
        let big = {
            let ran = ran.clone();
            let payload = [7u8; 200];
            IoHandler::new(move |r, n| {
                assert_eq!((r, n), (Err(Error::Eof), 1));
                assert_eq!(payload[199], 7);
                ran.set(ran.get() + 10);
            })
        };
        small.call(Ok(()), 3);
        big.call(Err(Error::Eof), 1);
        assert_eq!(ran.get(), 11);
        assert_eq!(Rc::strong_count(&ran), 1, "the captures were dropped");
        let dropped = ran.clone();
        drop(IoHandler::new(move |_, _| drop(dropped)));
        assert_eq!(
            Rc::strong_count(&ran),
            1,
            "an uncalled handler drops its captures"
        );
    }

    #[test]
    fn a_write_job_lends_its_buffers_and_drops_them_before_the_handler() {
        let data = Rc::new(());
        struct Tracked {
            _alive: Rc<()>,
            rest: &'static [u8],
        }
        impl Buf for Tracked {
            fn remaining(&self) -> usize {
                self.rest.len()
            }
            fn chunk(&self) -> &[u8] {
                self.rest
            }
            fn advance(&mut self, n: usize) {
                self.rest = &self.rest[n..];
            }
        }
        let probe = data.clone();
        let mut job = WriteJob::new(
            Tracked {
                _alive: data.clone(),
                rest: b"hello",
            },
            move |r, n| {
                assert_eq!((r, n), (Ok(()), 5));
                assert_eq!(Rc::strong_count(&probe), 2, "the buffers are gone");
            },
        );
        assert_eq!(job.data().remaining(), 5);
        job.data().advance(2);
        assert_eq!(job.data().chunk(), b"llo");
        job.into_handler().call(Ok(()), 5);
        assert_eq!(Rc::strong_count(&data), 1);
    }

    #[test]
    fn a_write_jobs_handler_too_large_for_a_handler_slot_still_runs_once_after_its_buffers_go() {
        let alive = Rc::new(());
        let ran = Rc::new(Cell::new(0));
        // Five words of captures: the job (with one-word buffers) fits its own room, the
        // handler alone does not fit a handler's room and is boxed when the job ends.
        let (probe, counter, pad) = (alive.clone(), ran.clone(), [3u64; 3]);
        let handler = move |r: Result<(), Error>, n: usize| {
            assert_eq!((r, n), (Err(Error::Eof), 4));
            assert_eq!(Rc::strong_count(&probe), 2, "the buffers are gone");
            assert_eq!(pad[2], 3);
            counter.set(counter.get() + 1);
        };
        struct Held(#[allow(dead_code)] Rc<()>);
        let handler_room = mem::size_of::<Storage<HANDLER_WORDS>>();
        assert!(mem::size_of_val(&handler) > handler_room);
        let job_room = mem::size_of::<Storage<WRITE_WORDS>>();
        assert!(mem::size_of_val(&handler) + mem::size_of::<Held>() <= job_room);
        impl Buf for Held {
            fn remaining(&self) -> usize {
                0
            }
            fn chunk(&self) -> &[u8] {
                &[]
            }
            fn advance(&mut self, _: usize) {}
        }
        let job = WriteJob::new(Held(alive.clone()), handler);
        job.into_handler().call(Err(Error::Eof), 4);
        assert_eq!(ran.get(), 1);
        assert_eq!(
            Rc::strong_count(&alive),
            1,
            "everything captured was dropped"
        );
    }
}
