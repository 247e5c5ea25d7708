//! Handler checkers (Beast's `test::success_handler`, `fail_handler`, `any_handler`).

use crate::Error;

/// What a checked handler expects.
#[derive(Debug, Clone)]
enum Expect {
    Success,
    Failure(Error),
    Any,
}

/// An obligation to be invoked exactly once, with the expected result. Dropping it
/// uninvoked panics (unless the thread is already panicking).
#[derive(Debug)]
struct Obligation {
    expect: Expect,
    invoked: bool,
}

impl Obligation {
    fn new(expect: Expect) -> Obligation {
        Obligation {
            expect,
            invoked: false,
        }
    }

    fn check(mut self, result: &Result<(), Error>) {
        self.invoked = true;
        match (&self.expect, result) {
            (Expect::Any, _) | (Expect::Success, Ok(())) => {}
            (Expect::Failure(want), Err(got)) if want == got => {}
            (expect, got) => panic!("handler expected {expect:?}, got {got:?}"),
        }
    }
}

impl Drop for Obligation {
    fn drop(&mut self) {
        if !self.invoked && !std::thread::panicking() {
            panic!("handler expecting {:?} was never invoked", self.expect);
        }
    }
}

/// A read or write handler that must run exactly once, with success.
///
/// ```
/// use rbeast::net::IoContext;
/// use rbeast::test::{success_handler, Stream};
/// let ctx = IoContext::new().unwrap();
/// let (a, _b) = Stream::pair(&ctx);
/// a.async_write(&b"x"[..], success_handler());
/// ctx.run();
/// ```
pub fn success_handler() -> impl FnOnce(Result<(), Error>, usize) + 'static {
    let ob = Obligation::new(Expect::Success);
    move |r, _| ob.check(&r)
}

/// A read or write handler that must run exactly once, with error `e`.
///
/// ```
/// use rbeast::net::IoContext;
/// use rbeast::test::{fail_handler, Stream};
/// let ctx = IoContext::new().unwrap();
/// let (a, _b) = Stream::pair(&ctx);
/// a.close();
/// a.async_write(&b"x"[..], fail_handler(rbeast::Error::OperationAborted));
/// ctx.run();
/// ```
pub fn fail_handler(e: Error) -> impl FnOnce(Result<(), Error>, usize) + 'static {
    let ob = Obligation::new(Expect::Failure(e));
    move |r, _| ob.check(&r)
}

/// A read or write handler that must run exactly once, with any result.
///
/// ```
/// use rbeast::net::IoContext;
/// use rbeast::test::{any_handler, Stream};
/// let ctx = IoContext::new().unwrap();
/// let (a, _b) = Stream::pair(&ctx);
/// a.async_write(&b"x"[..], any_handler());
/// ctx.run();
/// ```
pub fn any_handler() -> impl FnOnce(Result<(), Error>, usize) + 'static {
    let ob = Obligation::new(Expect::Any);
    move |r, _| ob.check(&r)
}

/// A wait-style handler (timers, handshakes, close) that must run once, with success.
///
/// ```
/// use rbeast::net::{IoContext, SteadyTimer};
/// let ctx = IoContext::new().unwrap();
/// let t = SteadyTimer::new(&ctx);
/// t.async_wait(rbeast::test::success_wait());
/// ctx.run();
/// ```
pub fn success_wait() -> impl FnOnce(Result<(), Error>) + 'static {
    let ob = Obligation::new(Expect::Success);
    move |r| ob.check(&r)
}

/// A wait-style handler that must run once, with error `e`.
///
/// ```
/// use std::time::Duration;
/// use rbeast::net::{IoContext, SteadyTimer};
/// let ctx = IoContext::new().unwrap();
/// let t = SteadyTimer::new(&ctx);
/// t.expires_after(Duration::from_secs(60));
/// t.async_wait(rbeast::test::fail_wait(rbeast::Error::OperationAborted));
/// t.cancel();
/// ctx.run();
/// ```
pub fn fail_wait(e: Error) -> impl FnOnce(Result<(), Error>) + 'static {
    let ob = Obligation::new(Expect::Failure(e));
    move |r| ob.check(&r)
}
