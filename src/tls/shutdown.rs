//! The TLS shutdown operation (Beast's `ssl_stream::async_shutdown`): our close_notify,
//! then the peer's.

use super::engine::ReadOutcome;
use super::stream::{Shared, Stream};
use crate::net::Transport;
use crate::Error;

/// Application data still arriving during a shutdown is read in pieces this large and
/// discarded.
const DISCARD_CHUNK: usize = 4096;

impl<T: Transport> Shared<T> {
    /// Advances a pending shutdown; completes it once our close_notify has left and the
    /// peer's has arrived, or on failure.
    pub(crate) fn advance_shutdown(&self) {
        if self.ops.borrow().shutdown.is_none() {
            return;
        }
        let result = {
            let mut engine = self.engine.borrow_mut();
            let mut discard = [0u8; DISCARD_CHUNK];
            loop {
                let flushed = match engine.write_out() {
                    Ok(flushed) => flushed,
                    Err(e) => break Err(e),
                };
                match engine.read_plaintext(&mut discard) {
                    Ok(0) if flushed => break Ok(()),
                    Ok(0) => return, // the peer's close_notify is in; ours is still leaving
                    Ok(_) => continue,
                    Err(ReadOutcome::WouldBlock) => {
                        engine.readable = false;
                        return;
                    }
                    Err(ReadOutcome::Failed(e)) => break Err(e),
                }
            }
        };
        let handler = self.ops.borrow_mut().shutdown.take();
        if let Some(h) = handler {
            self.arm_timer(false);
            self.handle.complete_wait(h, result);
        }
    }
}

impl<T: Transport> Stream<T> {
    /// Shuts the TLS connection down (Beast's `async_shutdown`): sends our close_notify and
    /// waits for the peer's, discarding application data that still arrives. The next
    /// layer stays open (close it, or let the WebSocket teardown do it). Bounded by
    /// [`handshake_timeout`](Stream::handshake_timeout).
    ///
    /// The handler runs exactly once, from the context's run loop: `Ok(())` after the
    /// exchange, [`Error::StreamTruncated`] when the peer closed without a close_notify,
    /// [`Error::Timeout`], [`Error::AlreadyStarted`], [`Error::OperationAborted`] (closed,
    /// or no handshake was done), or the error that failed the connection earlier.
    ///
    /// ```
    /// use rbeast::tls::{Context, Stream};
    /// # let ctx = rbeast::net::IoContext::new().unwrap();
    /// let (a, _b) = rbeast::test::Stream::pair(&ctx);
    /// let s = Stream::new(a, &Context::default());
    /// // No handshake was done: nothing to shut down.
    /// s.async_shutdown(|r| assert_eq!(r, Err(rbeast::Error::OperationAborted)));
    /// ctx.run();
    /// ```
    pub fn async_shutdown(&self, handler: impl FnOnce(Result<(), Error>) + 'static) {
        let shared = &self.shared;
        let refusal = {
            let engine = shared.engine.borrow();
            if let Err(e) = engine.check() {
                Some(e)
            } else if engine.conn.is_none() || !engine.next.is_open() {
                Some(Error::OperationAborted)
            } else if shared.ops.borrow().shutdown.is_some() {
                Some(Error::AlreadyStarted)
            } else {
                None
            }
        };
        if shared.start_op(Box::new(handler), refusal, |ops| &mut ops.shutdown) {
            shared.engine.borrow_mut().send_close_notify(false);
            shared.advance_shutdown();
        }
    }
}
