//! `WriteQueue`: any number of whole messages, sent in order, coalesced into vectored
//! writes, each with its own completion (beyond Beast: boostorg/beast #1080, #2033).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Buf, Bytes};

use super::core::Core;
use super::stream::Stream;
use crate::net::{IoHandler, Transport};
use crate::proto::frame::Opcode;
use crate::Error;

impl<T: Transport> Core<T> {
    /// Queues the frames of a whole message at once when the write side is free and the
    /// output has room. `Ok(false)` means the message must go through a regular write (a
    /// write or a fragmented message is in progress, the output is full, or the message is
    /// to be compressed).
    pub(crate) fn try_emit_message(&mut self, binary: bool, data: &Bytes) -> Result<bool, Error> {
        self.admit(false)?;
        if self.close_started() {
            return Err(Error::OperationAborted);
        }
        if self.write_op.is_some()
            || self.wr_cont
            || self.pmd.writing_message()
            || self.pmd.would_compress(data.len())
            || self.output_full()
        {
            return Ok(false);
        }
        let opcode = if binary { Opcode::Binary } else { Opcode::Text };
        let mut data = data.clone();
        let mut first = true;
        loop {
            let remaining = data.remaining();
            let len = if self.opts.auto_fragment {
                remaining.min(self.opts.write_buffer_bytes())
            } else {
                remaining
            };
            let fin = len == remaining;
            let frame_opcode = if first { opcode } else { Opcode::Continuation };
            self.emit_frame(fin, frame_opcode, &mut data, len);
            first = false;
            if fin {
                return Ok(true);
            }
        }
    }
}

struct Entry {
    data: Bytes,
    binary: bool,
    handler: IoHandler,
}

struct QueueState {
    pending: VecDeque<Entry>,
    queued_bytes: usize,
    max_bytes: usize,
    /// A message is in a regular write (waiting for room in the output).
    writing: bool,
}

/// Sends any number of whole messages on a [`Stream`], in order, one write at a time, and
/// reports each message's completion: the queue Beast users build by hand (the "write
/// queue" of Beast's chat example).
///
/// Messages queued while the connection's output has room are framed at once, so whatever
/// is queued during one turn of the context leaves in one vectored write. The bytes waiting
/// in the queue are bounded: past `max_bytes`, [`send`](WriteQueue::send) completes with
/// [`Error::WriteQueueFull`]. The queue owns the stream's write side: do not call the
/// stream's own write operations while it has messages.
///
/// ```
/// use rbeast::net::IoContext;
/// use rbeast::websocket::{Stream, WriteQueue};
/// let ctx = IoContext::new().unwrap();
/// let (a, _b) = rbeast::test::Stream::pair(&ctx);
/// let ws = Stream::new(a);
/// # ws.open_unchecked(rbeast::Role::Server);
/// let queue = WriteQueue::new(&ws, 1 << 20);
/// for i in 0..3 {
///     queue.send(format!("message {i}"), false, move |r, n| println!("{i}: {r:?} {n}"));
/// }
/// ctx.run();
/// ```
pub struct WriteQueue<T: Transport> {
    ws: Stream<T>,
    state: Rc<RefCell<QueueState>>,
}

impl<T: Transport> Clone for WriteQueue<T> {
    fn clone(&self) -> Self {
        WriteQueue {
            ws: self.ws.clone(),
            state: self.state.clone(),
        }
    }
}

impl<T: Transport> WriteQueue<T> {
    /// A queue sending on `ws` that holds at most `max_bytes` of messages not yet handed
    /// to the stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let ws = rbeast::websocket::Stream::new(a);
    /// let queue = rbeast::websocket::WriteQueue::new(&ws, 64 * 1024);
    /// assert_eq!(queue.queued_bytes(), 0);
    /// ```
    pub fn new(ws: &Stream<T>, max_bytes: usize) -> WriteQueue<T> {
        WriteQueue {
            ws: ws.clone(),
            state: Rc::new(RefCell::new(QueueState {
                pending: VecDeque::new(),
                queued_bytes: 0,
                max_bytes,
                writing: false,
            })),
        }
    }

    /// Queues a whole message (`binary` or text). The handler runs once the message was
    /// handed to the stream's output, with the bytes of `message` as `bytes_transferred`,
    /// or with the error: [`Error::WriteQueueFull`] past the bound, the stream's error
    /// otherwise (the first real error goes to one message, later ones get
    /// [`Error::OperationAborted`]). Its kind is `binary`; the stream's `compress`,
    /// `auto_fragment` and `write_buffer_bytes` apply as they are when the queue hands the
    /// message to the stream: in this call, unless a message before it is still waiting to
    /// be written, and then once that one is.
    ///
    /// # Handler
    /// `FnOnce(Result<(), Error>, usize)`, run exactly once from the context's run loop,
    /// never inside this call. `bytes_transferred` is the length of `message` on success
    /// (never header or compressed bytes), 0 for a message that was refused.
    ///
    /// # Errors
    /// - [`Error::WriteQueueFull`]: the message does not fit in what is left of
    ///   `max_bytes`; it is not queued.
    /// - The errors of [`Stream::async_write`]: [`Error::OperationAborted`] once a close
    ///   frame was sent or the stream failed, the connection's error for the one message that
    ///   meets it, and so on.
    ///
    /// # Concurrency
    /// Any number of messages may be queued, from any handler; they go out in the order
    /// they were sent, each whole (never interleaved with another message). The queue owns
    /// the stream's write side: a message that meets an outstanding write started directly
    /// on the stream completes with [`Error::AlreadyStarted`]. Reads, pings and a close may run alongside.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// # ws.open_unchecked(rbeast::Role::Server);
    /// let queue = rbeast::websocket::WriteQueue::new(&ws, 4);
    /// queue.send("hi", false, |r, n| assert_eq!((r, n), (Ok(()), 2)));
    /// queue.send("too long", false, |r, _| assert_eq!(r, Err(rbeast::Error::WriteQueueFull)));
    /// ctx.run();
    /// ```
    pub fn send(
        &self,
        message: impl Into<Bytes>,
        binary: bool,
        handler: impl FnOnce(Result<(), Error>, usize) + 'static,
    ) {
        let data = message.into();
        let handle = self.ws.handle().clone();
        if handle.is_shut_down() {
            return;
        }
        {
            let mut st = self.state.borrow_mut();
            if data.len() > st.max_bytes - st.queued_bytes {
                drop(st);
                handle.post_io(IoHandler::new(handler), Err(Error::WriteQueueFull), 0);
                return;
            }
            st.queued_bytes += data.len();
            st.pending.push_back(Entry {
                data,
                binary,
                handler: IoHandler::new(handler),
            });
        }
        self.pump();
    }

    /// Bytes of messages not yet handed to the stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// let queue = rbeast::websocket::WriteQueue::new(&ws, 1024);
    /// assert_eq!(queue.queued_bytes(), 0);
    /// ```
    pub fn queued_bytes(&self) -> usize {
        self.state.borrow().queued_bytes
    }

    /// Messages not yet handed to the stream.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// let queue = rbeast::websocket::WriteQueue::new(&ws, 1024);
    /// assert!(queue.is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.state.borrow().pending.len()
    }

    /// True when no message waits.
    ///
    /// ```
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// # let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// # let ws = rbeast::websocket::Stream::new(a);
    /// assert!(rbeast::websocket::WriteQueue::new(&ws, 1).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands waiting messages to the stream: framed at once while the output has room,
    /// else one regular write, after which the queue goes on.
    fn pump(&self) {
        let handle = self.ws.handle().clone();
        loop {
            let entry = {
                let mut st = self.state.borrow_mut();
                if st.writing {
                    return;
                }
                match st.pending.pop_front() {
                    Some(entry) => {
                        st.queued_bytes -= entry.data.len();
                        entry
                    }
                    None => return,
                }
            };
            let len = entry.data.len();
            match self.ws.try_emit_message(entry.binary, &entry.data) {
                Ok(true) => handle.post_io(entry.handler, Ok(()), len),
                Err(e) => handle.post_io(entry.handler, Err(e), 0),
                Ok(false) => {
                    self.state.borrow_mut().writing = true;
                    let queue = self.clone();
                    let handler = entry.handler;
                    self.ws.set_binary(entry.binary);
                    self.ws.async_write(entry.data, move |r, n| {
                        queue.state.borrow_mut().writing = false;
                        handler.call(r, n);
                        queue.pump();
                    });
                    return;
                }
            }
        }
    }
}
