//! Helpers shared by the WebSocket integration tests. Each test file uses some of them.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::IoContext;
use rbeast::test;
use rbeast::websocket::Stream;
use rbeast::{Error, Role};

/// Keeps the first real error a scenario meets (for a fail loop), and on any error closes
/// the failing side's transport, so that the peer's pending operations end too, as
/// destroying the failing stream would.
#[derive(Clone)]
pub struct FirstError {
    slot: Rc<RefCell<Result<(), Error>>>,
    transport: test::Stream,
}

impl FirstError {
    pub fn new(transport: test::Stream) -> FirstError {
        FirstError {
            slot: Rc::new(RefCell::new(Ok(()))),
            transport,
        }
    }

    /// Records `r`; returns true when it is a success.
    pub fn record(&self, r: &Result<(), Error>) -> bool {
        let Err(e) = r else { return true };
        self.transport.close();
        let mut slot = self.slot.borrow_mut();
        if slot.is_ok() && *e != Error::OperationAborted {
            *slot = Err(e.clone());
        }
        false
    }

    pub fn result(&self) -> Result<(), Error> {
        self.slot.borrow().clone()
    }
}

/// Deterministic pseudo-random bytes (xorshift).
#[allow(dead_code)] // not every test file uses it
pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A connected client and server over the in-memory transport, both open (the handshake
/// skipped).
pub fn open_pair(ctx: &IoContext) -> (Stream<test::Stream>, Stream<test::Stream>) {
    let (a, b) = test::Stream::pair(ctx);
    let (client, server) = (Stream::new(a), Stream::new(b));
    client.open_unchecked(Role::Client);
    server.open_unchecked(Role::Server);
    (client, server)
}
