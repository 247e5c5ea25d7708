//! Control frames received: pings answered, the control callback queued, and the
//! backpressure that bounds both against a peer sending nothing else.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::close::AfterTeardown;
use super::read::{Consumer, Step};
use super::{Core, Status};
use crate::net::{Handle, Transport};
use crate::proto::close::{CloseCode, CloseReason};
use crate::proto::frame::{Opcode, MAX_CONTROL_PAYLOAD};
use crate::websocket::FrameType;

/// Calls of the control callback queued and not run yet at which parsing waits for them:
/// each holds a copy of its frame's payload, and a peer sending nothing but control
/// frames would otherwise make the queue as long as its input.
const CONTROL_CALLS_QUEUED_MAX: usize = 16;

/// The control callback, with the count of its calls queued and not run yet.
pub(crate) struct ControlObserver<F: ?Sized> {
    queued: Cell<usize>,
    callback: RefCell<F>,
}

impl<F: FnMut(FrameType, &[u8])> ControlObserver<F> {
    pub(crate) fn new(callback: F) -> ControlObserver<F> {
        ControlObserver {
            queued: Cell::new(0),
            callback: RefCell::new(callback),
        }
    }
}

pub(crate) type ControlCallback = Rc<ControlObserver<dyn FnMut(FrameType, &[u8])>>;

impl<T: Transport> Core<T> {
    /// Handles a received control frame.
    pub(super) fn on_control(
        &mut self,
        handle: &Handle,
        consumer: Consumer,
        opcode: Opcode,
        payload: &[u8],
    ) -> Step {
        let draining = consumer == Consumer::CloseDrain;
        match opcode {
            Opcode::Ping => {
                if !draining && self.status == Status::Open {
                    self.arm_idle();
                    self.notify(handle, FrameType::Ping, payload);
                    self.emit_control(Opcode::Pong, payload);
                }
                Step::Progress
            }
            Opcode::Pong => {
                if !draining && !self.wr_close {
                    self.notify(handle, FrameType::Pong, payload);
                }
                Step::Progress
            }
            _ => {
                let reason = match CloseReason::parse(payload) {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail_protocol(consumer, e);
                        return Step::Finished;
                    }
                };
                self.close_reason = Some(Box::new(reason));
                if draining {
                    self.start_teardown(AfterTeardown::Close(None));
                    return Step::Finished;
                }
                self.notify(handle, FrameType::Close, reason.reason().as_bytes());
                if !self.wr_close {
                    let code = if reason.code == CloseCode::NONE {
                        CloseCode::NORMAL
                    } else {
                        reason.code
                    };
                    self.emit_close(&CloseReason::new(code));
                }
                self.status = Status::Closing;
                self.start_teardown(AfterTeardown::ReadClosed);
                Step::Finished
            }
        }
    }

    /// Queues the control callback, if any, from the run loop.
    fn notify(&self, handle: &Handle, kind: FrameType, payload: &[u8]) {
        if let Some(observer) = self.control.clone() {
            let mut copy = [0u8; MAX_CONTROL_PAYLOAD];
            let n = payload.len().min(MAX_CONTROL_PAYLOAD);
            copy[..n].copy_from_slice(&payload[..n]);
            observer.queued.set(observer.queued.get() + 1);
            handle.post(move || {
                observer.queued.set(observer.queued.get() - 1);
                (observer.callback.borrow_mut())(kind, &copy[..n])
            });
        }
    }

    /// True when the control frame `opcode` must wait before it is handled (Beast's read
    /// waits for its pong to be written): its reply would go to an output holding twice
    /// its high-water mark, or the control callback has `CONTROL_CALLS_QUEUED_MAX` calls
    /// queued. Writes stop at the mark itself, so a write that keeps the output there
    /// never holds a reply back. A closing drain neither replies nor calls back, so it
    /// never waits.
    pub(super) fn control_must_wait(&self, consumer: Consumer, opcode: Opcode) -> bool {
        consumer == Consumer::Read
            && (self.control_calls_full()
                || (opcode != Opcode::Pong
                    && self.out.len() >= self.opts.high_water().saturating_mul(2)))
    }

    /// True when the control callback has `CONTROL_CALLS_QUEUED_MAX` calls queued.
    fn control_calls_full(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|observer| observer.queued.get() >= CONTROL_CALLS_QUEUED_MAX)
    }

    /// True when parsing may have stopped for the control callback's queued calls to run:
    /// the engine must run again after them, since no readiness event will come for bytes
    /// already read or left unread.
    pub(super) fn awaits_control_calls(&self) -> bool {
        self.control_calls_full() && self.consumer() == Some(Consumer::Read)
    }
}
