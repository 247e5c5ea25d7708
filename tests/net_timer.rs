//! Tests of `SteadyTimer`. Only lower bounds on elapsed time are asserted: a slow or busy
//! machine may run handlers late, never early.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rbeast::net::{IoContext, SteadyTimer};
use rbeast::test::{fail_wait, success_wait};
use rbeast::Error;

/// A small deterministic generator (xorshift64*), enough to shuffle.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

type Results = Rc<RefCell<Vec<Result<(), Error>>>>;

fn recorder(results: &Results) -> impl FnOnce(Result<(), Error>) + 'static {
    let results = results.clone();
    move |r| results.borrow_mut().push(r)
}

#[test]
fn ten_thousand_timers_complete_in_deadline_order() {
    const N: usize = 10_000;
    let ctx = IoContext::new().unwrap();
    // Distinct deadlines 20 µs apart (0.2 s in all), armed in shuffled order.
    let mut offsets: Vec<u64> = (0..N as u64).map(|i| i * 20).collect();
    Rng(0x9E37_79B9_7F4A_7C15).shuffle(&mut offsets);
    let base = Instant::now() + Duration::from_millis(20);
    let order = Rc::new(RefCell::new(Vec::with_capacity(N)));
    let mut timers = Vec::with_capacity(N);
    for &offset in &offsets {
        let t = SteadyTimer::new(&ctx);
        let deadline = base + Duration::from_micros(offset);
        t.expires_at(deadline);
        let order = order.clone();
        t.async_wait(move |r| {
            assert_eq!(r, Ok(()));
            assert!(Instant::now() >= deadline, "a timer fired early");
            order.borrow_mut().push(offset);
        });
        timers.push(t);
    }
    assert_eq!(ctx.run(), N);
    let order = order.borrow();
    assert_eq!(order.len(), N);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N as u64).map(|i| i * 20).collect::<Vec<_>>());
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "completion order is not deadline order"
    );
    assert!(Instant::now() >= base + Duration::from_micros((N as u64 - 1) * 20));
}

#[test]
fn a_wait_completes_no_earlier_than_the_expiry() {
    let ctx = IoContext::new().unwrap();
    let t = SteadyTimer::new(&ctx);
    let start = Instant::now();
    t.expires_after(Duration::from_millis(30));
    let expiry = t.expiry().unwrap();
    assert!(expiry >= start + Duration::from_millis(30));
    t.async_wait(success_wait());
    assert_eq!(ctx.run(), 1);
    assert!(Instant::now() >= expiry);
}

#[test]
fn cancel_aborts_every_pending_wait_and_returns_the_count() {
    let ctx = IoContext::new().unwrap();
    let t = SteadyTimer::new(&ctx);
    t.expires_after(Duration::from_secs(3600));
    let results: Results = Rc::default();
    for _ in 0..3 {
        t.async_wait(recorder(&results));
    }
    assert_eq!(t.cancel(), 3);
    assert!(results.borrow().is_empty(), "not inline");
    assert_eq!(t.cancel(), 0, "nothing left to cancel");
    assert_eq!(ctx.run(), 3);
    assert_eq!(*results.borrow(), vec![Err(Error::OperationAborted); 3]);
    // The expiry is unchanged and the timer is usable again.
    assert!(t.expiry().unwrap() > Instant::now());
    t.expires_after(Duration::from_millis(1));
    t.async_wait(success_wait());
    ctx.run();
}

#[test]
fn rearming_cancels_pending_waits_and_the_new_wait_uses_the_new_expiry() {
    let ctx = IoContext::new().unwrap();
    let t = SteadyTimer::new(&ctx);
    let results: Results = Rc::default();
    // Re-armed later: the first wait aborts, the second must not fire at the old expiry.
    t.expires_after(Duration::from_millis(10));
    t.async_wait(recorder(&results));
    t.async_wait(recorder(&results));
    let start = Instant::now();
    assert_eq!(t.expires_after(Duration::from_millis(60)), 2);
    t.async_wait(recorder(&results));
    assert_eq!(ctx.run(), 3);
    assert!(start.elapsed() >= Duration::from_millis(60), "fired early");
    assert_eq!(
        *results.borrow(),
        vec![
            Err(Error::OperationAborted),
            Err(Error::OperationAborted),
            Ok(())
        ]
    );
    // Re-armed earlier: the wait fires at the new, earlier expiry.
    results.borrow_mut().clear();
    t.expires_after(Duration::from_secs(3600));
    t.async_wait(recorder(&results));
    assert_eq!(t.expires_after(Duration::from_millis(5)), 1);
    t.async_wait(recorder(&results));
    assert_eq!(ctx.run(), 2);
    assert_eq!(
        *results.borrow(),
        vec![Err(Error::OperationAborted), Ok(())]
    );
    // expires_at reports the cancelled count too.
    t.expires_after(Duration::from_secs(3600));
    t.async_wait(fail_wait(Error::OperationAborted));
    assert_eq!(t.expires_at(Instant::now()), 1);
    ctx.run();
}

#[test]
fn dropping_a_timer_aborts_its_waits_from_the_run_loop() {
    let ctx = IoContext::new().unwrap();
    let results: Results = Rc::default();
    let t = SteadyTimer::new(&ctx);
    t.expires_after(Duration::from_secs(3600));
    t.async_wait(recorder(&results));
    t.async_wait(recorder(&results));
    drop(t);
    assert!(results.borrow().is_empty(), "not inline");
    assert_eq!(ctx.run(), 2);
    assert_eq!(*results.borrow(), vec![Err(Error::OperationAborted); 2]);
}

#[test]
fn a_wait_on_an_expired_timer_completes_on_the_next_run_not_inline() {
    let ctx = IoContext::new().unwrap();
    let results: Results = Rc::default();
    // A new timer has already expired (asio's behaviour).
    let fresh = SteadyTimer::new(&ctx);
    fresh.async_wait(recorder(&results));
    let past = SteadyTimer::new(&ctx);
    past.expires_at(Instant::now() - Duration::from_secs(1));
    past.async_wait(recorder(&results));
    assert!(results.borrow().is_empty(), "not inline");
    assert_eq!(ctx.poll(), 2);
    assert_eq!(*results.borrow(), vec![Ok(()), Ok(())]);
    // Waiting again on the same expired timer completes again.
    past.async_wait(recorder(&results));
    assert_eq!(results.borrow().len(), 2);
    assert_eq!(ctx.run(), 1);
    assert_eq!(results.borrow().len(), 3);
}

#[test]
fn expires_never_waits_until_cancelled() {
    let ctx = IoContext::new().unwrap();
    let t = SteadyTimer::new(&ctx);
    assert_eq!(t.expires_never(), 0);
    assert_eq!(t.expiry(), None);
    let results: Results = Rc::default();
    t.async_wait(recorder(&results));
    let start = Instant::now();
    assert_eq!(ctx.run_for(Duration::from_millis(30)), 0);
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(results.borrow().is_empty());
    assert_eq!(t.cancel(), 1);
    assert_eq!(ctx.run(), 1);
    assert_eq!(*results.borrow(), vec![Err(Error::OperationAborted)]);
    // expires_never also cancels, like any change of expiry.
    t.expires_after(Duration::from_secs(3600));
    t.async_wait(recorder(&results));
    assert_eq!(t.expires_never(), 1);
    ctx.run();
    assert_eq!(results.borrow().len(), 2);
    assert_eq!(results.borrow()[1], Err(Error::OperationAborted));
}

#[test]
fn several_waits_on_one_timer_all_complete_in_the_order_they_started() {
    let ctx = IoContext::new().unwrap();
    let t = SteadyTimer::new(&ctx);
    t.expires_after(Duration::from_millis(10));
    let order = Rc::new(RefCell::new(Vec::new()));
    for i in 0..5 {
        let order = order.clone();
        t.async_wait(move |r| {
            assert_eq!(r, Ok(()));
            order.borrow_mut().push(i);
        });
    }
    assert_eq!(ctx.run(), 5);
    assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_handler_can_rearm_its_own_timer() {
    let ctx = IoContext::new().unwrap();
    let t = Rc::new(SteadyTimer::new(&ctx));
    let ticks = Rc::new(Cell::new(0));
    fn tick(t: Rc<SteadyTimer>, ticks: Rc<Cell<u32>>) {
        t.expires_after(Duration::from_millis(2));
        let t2 = t.clone();
        t.async_wait(move |r| {
            assert_eq!(r, Ok(()));
            ticks.set(ticks.get() + 1);
            if ticks.get() < 5 {
                tick(t2, ticks);
            }
        });
    }
    let start = Instant::now();
    tick(t.clone(), ticks.clone());
    assert_eq!(ctx.run(), 5);
    assert_eq!(ticks.get(), 5);
    assert!(start.elapsed() >= Duration::from_millis(10));
}

#[test]
fn dropping_the_context_drops_pending_waits_uninvoked() {
    struct Tracker(Rc<Cell<usize>>);
    impl Drop for Tracker {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let drops = Rc::new(Cell::new(0));
    let invoked = Rc::new(Cell::new(false));
    {
        let ctx = IoContext::new().unwrap();
        // The wait captures its own timer: a cycle that only the context can break.
        let t = Rc::new(SteadyTimer::new(&ctx));
        t.expires_after(Duration::from_secs(3600));
        let (me, tracker, flag) = (t.clone(), Tracker(drops.clone()), invoked.clone());
        t.async_wait(move |_| {
            flag.set(true);
            drop((me, tracker));
        });
        let never = SteadyTimer::new(&ctx);
        never.expires_never();
        let (tracker, flag) = (Tracker(drops.clone()), invoked.clone());
        never.async_wait(move |_| {
            flag.set(true);
            drop(tracker);
        });
        drop(t);
        assert_eq!(drops.get(), 0);
        drop(ctx);
        // Freed by the context, while the timer object itself is still alive.
        assert_eq!(drops.get(), 2);
        drop(never);
    }
    assert_eq!(drops.get(), 2);
    assert!(!invoked.get());
}
