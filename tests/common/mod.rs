//! Helpers shared by the WebSocket integration tests. Each test file uses some of them.
#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use rbeast::net::{IoContext, TcpAcceptor, TcpStream};
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

/// A slot that a completion handler fills with its outcome; clones share the slot.
pub struct Captured<T>(Rc<RefCell<Option<T>>>);

impl<T> Clone for Captured<T> {
    fn clone(&self) -> Self {
        Captured(self.0.clone())
    }
}

impl<T: 'static> Captured<T> {
    /// An empty slot.
    pub fn new() -> Self {
        Captured(Rc::new(RefCell::new(None)))
    }

    /// Whether a handler has filled the slot (and it has not been taken since).
    pub fn is_set(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Empties the slot, returning what the handler stored, if it ran.
    pub fn take(&self) -> Option<T> {
        self.0.borrow_mut().take()
    }

    /// Fills the slot; panics if it is already full (a handler runs only once).
    pub fn set(&self, value: T) {
        let old = self.0.borrow_mut().replace(value);
        assert!(old.is_none(), "a handler ran twice");
    }
}

impl Captured<(Result<(), Error>, usize)> {
    /// A read or write handler that stores its `(result, bytes_transferred)`.
    pub fn io_handler(&self) -> impl FnOnce(Result<(), Error>, usize) + 'static {
        let slot = self.clone();
        move |r, n| slot.set((r, n))
    }
}

impl Captured<Result<(), Error>> {
    /// A read or write handler that stores its result, ignoring the byte count.
    pub fn result_handler(&self) -> impl FnOnce(Result<(), Error>, usize) + 'static {
        let slot = self.clone();
        move |r, _| slot.set(r)
    }

    /// A wait-style handler (connect, close, timer) that stores its result.
    pub fn wait_handler(&self) -> impl FnOnce(Result<(), Error>) + 'static {
        let slot = self.clone();
        move |r| slot.set(r)
    }
}

/// A masked frame as a client sends it (key 0x37fa213d): `first` is the FIN/RSV/opcode
/// byte.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&KEY);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    f
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

/// An open client and server over loopback TCP (a real handshake).
pub fn tcp_pair(ctx: &IoContext) -> (Stream<TcpStream>, Stream<TcpStream>) {
    let acceptor = TcpAcceptor::bind(ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = acceptor.local_addr().unwrap();
    let server = Rc::new(RefCell::new(None));
    let slot = server.clone();
    acceptor.async_accept(move |r| {
        let ws = Stream::new(r.unwrap());
        ws.async_accept(|r| r.unwrap());
        *slot.borrow_mut() = Some(ws);
    });
    let sock = TcpStream::new(ctx);
    let client = Stream::new(sock.clone());
    let c = client.clone();
    sock.async_connect(addr, move |r| {
        r.unwrap();
        c.async_handshake("127.0.0.1", "/", |r| r.unwrap());
    });
    ctx.run();
    let server = server.borrow_mut().take().unwrap();
    assert!(client.is_open() && server.is_open());
    (client, server)
}

/// One frame as seen on the wire.
#[derive(Debug)]
pub struct WireFrame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Parses (and unmasks) every whole frame in `bytes`.
#[allow(dead_code)] // not every test file uses it
pub fn parse_frames(bytes: &[u8]) -> Vec<WireFrame> {
    let mut frames = Vec::new();
    let mut p = 0;
    while bytes.len() - p >= 2 {
        let (b0, b1) = (bytes[p], bytes[p + 1]);
        let mut at = p + 2;
        let mut len = u64::from(b1 & 0x7f);
        if len == 126 {
            len = u64::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
            at += 2;
        } else if len == 127 {
            let mut be = [0u8; 8];
            be.copy_from_slice(&bytes[at..at + 8]);
            len = u64::from_be_bytes(be);
            at += 8;
        }
        let mask = if b1 & 0x80 != 0 {
            let k = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
            at += 4;
            Some(k)
        } else {
            None
        };
        let end = at + len as usize;
        let mut payload = bytes[at..end].to_vec();
        if let Some(k) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frames.push(WireFrame {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            opcode: b0 & 0x0f,
            payload,
        });
        p = end;
    }
    frames
}
