//! Closing: the close handshake, and the teardown of the transport that ends every
//! closed or failed connection (RFC 6455 §7.1.1, in Beast's order).

use std::io;
use std::net::Shutdown;

use super::read::Consumer;
use super::{Core, Status};
use crate::net::{Handle, Transport, WaitHandler};
use crate::proto::close::{CloseCode, CloseReason};
use crate::{Error, Role};

/// An outstanding close (boxed: most streams never close this way).
pub(crate) struct CloseOp {
    pub(crate) handler: WaitHandler,
    /// The reason of a close started while a write was outstanding: its frame goes out once
    /// the write completes (Beast's close waits for the write lock).
    pub(crate) deferred: Option<CloseReason>,
}

/// What a finished teardown completes.
pub(super) enum AfterTeardown {
    /// A read that received the peer's close: `Error::Closed`.
    ReadClosed,
    /// A read that failed the connection with this error.
    ReadFailed(Error),
    /// The close operation (with the error met while draining, if any).
    Close(Option<Error>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum TeardownPhase {
    Flush,
    Drain,
}

pub(super) struct Teardown {
    phase: TeardownPhase,
    then: AfterTeardown,
    /// The server's shutdown of its sending side failed (before the drain).
    shutdown_error: Option<Error>,
}

impl<T: Transport> Core<T> {
    /// A protocol violation: send the close code it calls for (unless a close frame was
    /// sent already), tear down, and complete with the error.
    pub(crate) fn fail_protocol(&mut self, consumer: Consumer, e: Error) {
        if !self.wr_close {
            if let Some(code) = e.close_code() {
                self.emit_close(&CloseReason::new(CloseCode(code)));
            }
        }
        self.status = Status::Closing;
        let then = match consumer {
            Consumer::Read => AfterTeardown::ReadFailed(e),
            Consumer::CloseDrain => AfterTeardown::Close(Some(e)),
        };
        self.start_teardown(then);
    }

    /// Starts the closing handshake: queues our close frame.
    pub(crate) fn start_close(&mut self, reason: &CloseReason) {
        self.emit_close(reason);
        self.status = Status::Closing;
    }

    /// True once a close was started or a close frame sent: writes, pings and pongs started
    /// now are aborted.
    pub(crate) fn close_started(&self) -> bool {
        self.wr_close
            || self
                .close_op
                .as_ref()
                .is_some_and(|op| op.deferred.is_some())
    }

    /// Takes the outstanding close's handler.
    pub(super) fn take_close_handler(&mut self) -> Option<WaitHandler> {
        self.close_op.take().map(|op| op.handler)
    }

    /// Sends the close frame of a close that waited for a parked write, once the write is
    /// done. Returns true when it did.
    pub(super) fn start_deferred_close(&mut self) -> bool {
        if self.write_op.is_some() || self.status != Status::Open {
            return false;
        }
        match self.close_op.as_mut().and_then(|op| op.deferred.take()) {
            Some(reason) => {
                self.start_close(&reason);
                true
            }
            None => false,
        }
    }

    pub(super) fn start_teardown(&mut self, then: AfterTeardown) {
        self.teardown = Some(Box::new(Teardown {
            phase: TeardownPhase::Flush,
            then,
            shutdown_error: None,
        }));
    }

    /// Tears the transport down (RFC 6455 §7.1.1, Beast's order): a server shuts down its
    /// sending side first and then reads until end of stream; a client reads until end of
    /// stream first. Then the transport is closed.
    pub(super) fn advance_teardown(&mut self, handle: &Handle) -> bool {
        let Some(phase) = self.teardown.as_ref().map(|t| t.phase) else {
            return false;
        };
        if phase == TeardownPhase::Flush {
            if !self.out.is_empty() && (!self.flush_now(handle) || !self.out.is_empty()) {
                return false;
            }
            if self.teardown.is_none() {
                return true; // the flush failed the connection
            }
            let shutdown_error = match self.role {
                Role::Server => self.shutdown_sending(),
                Role::Client => None,
            };
            if let Some(t) = self.teardown.as_mut() {
                t.phase = TeardownPhase::Drain;
                t.shutdown_error = shutdown_error;
            }
        }
        let outcome = loop {
            self.rd_buf.clear();
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => return phase == TeardownPhase::Flush,
                Err(Error::Eof) => break None,
                Err(e) => break Some(e),
            }
        };
        let outcome = match self.role {
            Role::Client => outcome.or_else(|| self.shutdown_sending()),
            Role::Server => outcome,
        };
        self.transport.close();
        self.rd_buf.clear();
        self.rd_buf.give_back(self.transport.handle().buffers());
        let Some(teardown) = self.teardown.take() else {
            return true;
        };
        // The first failure in time wins: for a server, its shutdown came first.
        let outcome = teardown.shutdown_error.or(outcome);
        self.finish_teardown(handle, teardown.then, outcome);
        true
    }

    /// Shuts down the transport's sending side (for TLS: close_notify, then the TCP
    /// shutdown). A failure is reported, except `NotConnected`: a TCP peer that already
    /// reset the connection leaves nothing to shut down, and the drain reports that.
    fn shutdown_sending(&mut self) -> Option<Error> {
        match self.transport.shutdown(Shutdown::Write) {
            Ok(()) => None,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Error::from(e)),
        }
    }

    fn finish_teardown(&mut self, handle: &Handle, then: AfterTeardown, outcome: Option<Error>) {
        match then {
            AfterTeardown::ReadClosed => {
                let result = match outcome {
                    None => {
                        self.status = Status::Closed;
                        Error::Closed
                    }
                    Some(e) => {
                        self.status = Status::Failed;
                        e
                    }
                };
                let err = self.deliver(result);
                self.complete_read(handle, Err(err));
            }
            AfterTeardown::ReadFailed(e) => {
                self.status = Status::Failed;
                let err = self.deliver(e);
                self.complete_read(handle, Err(err));
            }
            AfterTeardown::Close(error) => {
                let error = error.or(outcome);
                self.status = if error.is_some() {
                    Status::Failed
                } else {
                    Status::Closed
                };
                let result = match error {
                    None => Ok(()),
                    Some(e) => Err(self.deliver(e)),
                };
                if let Some(h) = self.take_close_handler() {
                    handle.complete_wait(h, result);
                }
                self.finish_suspended_read(handle);
            }
        }
        // Operations started while the connection was closing end with it, and a close
        // still waiting for a parked write finds the stream closed (Beast's `check_stop_now`).
        if let Some(h) = self.take_close_handler() {
            handle.complete_wait(h, Err(Error::OperationAborted));
        }
        if let Some(op) = self.read_op.take() {
            handle.complete_io(op.handler, Err(Error::OperationAborted), op.n);
        }
        self.read_suspended = false;
        if let Some(op) = self.write_op.take() {
            op.complete(handle, Err(Error::OperationAborted));
        }
    }
}
