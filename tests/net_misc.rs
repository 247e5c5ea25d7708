//! Tests of the resolver, the context pool and cross-thread posting.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rbeast::net::{AcceptorOptions, ContextPool, IoContext, Resolver, SteadyTimer, TcpAcceptor};
use rbeast::Error;

type Resolved = Rc<RefCell<Vec<Result<Vec<SocketAddr>, Error>>>>;

fn resolve(resolver: &Resolver, host: &str, port: u16, into: &Resolved) {
    let into = into.clone();
    resolver.async_resolve(host, port, move |r| into.borrow_mut().push(r));
}

#[test]
fn localhost_and_an_address_literal_resolve() {
    let ctx = IoContext::new().unwrap();
    let resolver = Resolver::new(&ctx);
    let got: Resolved = Rc::default();
    resolve(&resolver, "127.0.0.1", 8080, &got);
    assert!(got.borrow().is_empty(), "not inline");
    ctx.run();
    resolve(&resolver, "localhost", 443, &got);
    ctx.run();
    let got = got.borrow();
    assert_eq!(got.len(), 2);
    let literal = got[0].as_ref().unwrap();
    assert_eq!(
        literal,
        &vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
    );
    let local = got[1].as_ref().unwrap();
    assert!(!local.is_empty());
    assert!(local
        .iter()
        .all(|a| a.ip().is_loopback() && a.port() == 443));
}

#[test]
fn a_bogus_name_is_an_error() {
    let ctx = IoContext::new().unwrap();
    let resolver = Resolver::new(&ctx);
    let got: Resolved = Rc::default();
    resolve(&resolver, "nonexistent.invalid", 80, &got);
    ctx.run();
    let got = got.borrow();
    assert_eq!(got.len(), 1);
    match &got[0] {
        Err(Error::Io(_)) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn cancel_aborts_pending_lookups() {
    let ctx = IoContext::new().unwrap();
    let resolver = Resolver::new(&ctx);
    let got: Resolved = Rc::default();
    resolve(&resolver, "localhost", 1, &got);
    resolve(&resolver, "127.0.0.1", 2, &got);
    resolver.cancel();
    assert!(got.borrow().is_empty(), "not inline");
    ctx.run();
    assert_eq!(
        *got.borrow(),
        vec![Err(Error::OperationAborted), Err(Error::OperationAborted)]
    );
}

#[test]
fn a_cancelled_lookup_never_completes_a_later_one() {
    // The late result of a cancelled lookup must not reach the lookup started after it.
    let ctx = IoContext::new().unwrap();
    let resolver = Resolver::new(&ctx);
    let got: Resolved = Rc::default();
    resolve(&resolver, "127.0.0.1", 1, &got);
    // Let the helper thread finish, so that its result is already queued.
    std::thread::sleep(Duration::from_millis(50));
    resolver.cancel();
    resolve(&resolver, "127.0.0.1", 2, &got);
    ctx.run();
    let got = got.borrow();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], Err(Error::OperationAborted));
    assert_eq!(
        got[1],
        Ok(vec!["127.0.0.1:2".parse::<SocketAddr>().unwrap()]),
        "the second lookup got the first one's result"
    );
}

#[test]
fn a_pool_runs_init_once_per_thread_with_its_index() {
    const N: usize = 4;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let ran = Arc::new(AtomicUsize::new(0));
    let (s, r) = (seen.clone(), ran.clone());
    let pool = ContextPool::new(N, move |ctx, index| {
        let me = std::thread::current().id();
        s.lock().unwrap().push(index);
        let r = r.clone();
        // Work started by init runs on the same thread's context.
        ctx.post(move || {
            assert_eq!(std::thread::current().id(), me);
            r.fetch_add(1, Ordering::SeqCst);
        });
    })
    .unwrap();
    assert_eq!(pool.executors().len(), N);
    pool.join().unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    assert_eq!(seen, (0..N).collect::<Vec<_>>());
    assert_eq!(ran.load(Ordering::SeqCst), N);
}

/// Joins `pool` on a helper thread; panics if that takes longer than `limit` (a hang).
fn join_within(pool: ContextPool, limit: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = pool.join();
        let _ = tx.send(r.is_ok());
    });
    let ok = rx
        .recv_timeout(limit)
        .expect("the pool's threads did not return");
    assert!(ok, "a context thread panicked");
}

#[test]
fn stop_ends_every_run_even_with_work_guards() {
    let guards = Arc::new(Mutex::new(Vec::new()));
    let g = guards.clone();
    let pool = ContextPool::new(3, move |ctx, _| {
        // Would keep run() going forever.
        g.lock().unwrap().push(ctx.executor().work_guard());
    })
    .unwrap();
    // Let the threads block in run().
    std::thread::sleep(Duration::from_millis(20));
    pool.stop();
    join_within(pool, Duration::from_secs(60));
    assert_eq!(guards.lock().unwrap().len(), 3, "the guards are still held");
}

#[test]
fn two_contexts_with_reuse_port_listeners_share_the_connections() {
    const CONTEXTS: usize = 2;
    const MAX_CONNECTIONS: usize = 1000;
    let port = Arc::new((Mutex::new(None::<u16>), Condvar::new()));
    let listening = Arc::new(AtomicUsize::new(0));
    let accepted: Arc<Vec<AtomicUsize>> = Arc::new((0..CONTEXTS).map(|_| 0.into()).collect());
    let (p, l, a) = (port.clone(), listening.clone(), accepted.clone());
    let pool = ContextPool::new(CONTEXTS, move |ctx, index| {
        let opts = AcceptorOptions {
            reuse_port: true,
            ..Default::default()
        };
        let (lock, cond) = &*p;
        let acceptor = if index == 0 {
            let acceptor = TcpAcceptor::bind_with(ctx, "127.0.0.1:0".parse().unwrap(), opts);
            let acceptor = acceptor.unwrap();
            *lock.lock().unwrap() = Some(acceptor.local_addr().unwrap().port());
            cond.notify_all();
            acceptor
        } else {
            let mut port = lock.lock().unwrap();
            while port.is_none() {
                port = cond.wait(port).unwrap();
            }
            let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port.unwrap());
            TcpAcceptor::bind_with(ctx, addr, opts).unwrap()
        };
        l.fetch_add(1, Ordering::SeqCst);
        fn accept_loop(acceptor: TcpAcceptor, count: Arc<Vec<AtomicUsize>>, index: usize) {
            let again = acceptor.clone();
            acceptor.async_accept(move |r| {
                if r.is_ok() {
                    count[index].fetch_add(1, Ordering::SeqCst);
                    accept_loop(again, count, index);
                }
            });
        }
        accept_loop(acceptor, a.clone(), index);
    })
    .unwrap();
    while listening.load(Ordering::SeqCst) < CONTEXTS {
        std::thread::sleep(Duration::from_millis(1));
    }
    let port = port.0.lock().unwrap().unwrap();
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    // The kernel spreads connections over the listeners by hash: connect until each
    // context has accepted at least one.
    let mut made = 0;
    let mut clients = Vec::new();
    while made < MAX_CONNECTIONS && accepted.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
        clients.push(std::net::TcpStream::connect(addr).unwrap());
        made += 1;
        if made % 16 == 0 {
            clients.clear();
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // Wait until every connection made so far was accepted by someone.
    while accepted
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum::<usize>()
        < made
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    pool.stop();
    join_within(pool, Duration::from_secs(60));
    let counts: Vec<usize> = accepted.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert!(
        counts.iter().all(|&c| c > 0),
        "accepted per context: {counts:?}"
    );
    assert_eq!(counts.iter().sum::<usize>(), made);
}

#[test]
fn posts_from_four_threads_all_run_exactly_once_and_in_order_per_thread() {
    const THREADS: usize = 4;
    const TASKS: usize = 10_000;
    let ctx = IoContext::new().unwrap();
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..THREADS * TASKS).map(|_| 0.into()).collect());
    let last: Arc<Vec<AtomicUsize>> = Arc::new((0..THREADS).map(|_| 0.into()).collect());
    let in_order = Arc::new(AtomicBool::new(true));
    let context_thread = std::thread::current().id();
    let mut producers = Vec::new();
    for t in 0..THREADS {
        let ex = ctx.executor();
        let guard = ex.work_guard();
        let (runs, last, in_order) = (runs.clone(), last.clone(), in_order.clone());
        producers.push(std::thread::spawn(move || {
            for i in 0..TASKS {
                let (runs, last, in_order) = (runs.clone(), last.clone(), in_order.clone());
                ex.post(move || {
                    assert_eq!(std::thread::current().id(), context_thread);
                    runs[t * TASKS + i].fetch_add(1, Ordering::Relaxed);
                    // Tasks of one producer run in the order it posted them.
                    if last[t].swap(i + 1, Ordering::Relaxed) != i {
                        in_order.store(false, Ordering::Relaxed);
                    }
                })
                .unwrap();
            }
            drop(guard);
        }));
    }
    let handled = ctx.run();
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(handled, THREADS * TASKS);
    assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 1));
    assert!(in_order.load(Ordering::Relaxed));
}

/// Stops a context from another thread if the test is still running after a minute, so that
/// a lost wake-up fails the test instead of hanging it. `fired()` tells whether it stopped.
struct Watchdog {
    fired: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl Watchdog {
    fn new(ctx: &IoContext) -> Watchdog {
        let ex = ctx.executor();
        let fired = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (f, d) = (fired.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..600 {
                std::thread::sleep(Duration::from_millis(100));
                if d.load(Ordering::SeqCst) {
                    return;
                }
            }
            f.store(true, Ordering::SeqCst);
            ex.stop();
        });
        Watchdog { fired, done }
    }

    fn fired(&self) -> bool {
        self.done.store(true, Ordering::SeqCst);
        self.fired.load(Ordering::SeqCst)
    }
}

#[test]
fn a_cross_thread_post_wakes_a_run_blocked_on_a_far_timer() {
    let ctx = IoContext::new().unwrap();
    let timer = SteadyTimer::new(&ctx);
    timer.expires_after(Duration::from_secs(3600));
    timer.async_wait(|r| assert_eq!(r, Err(Error::OperationAborted)));
    // run_one() blocks with an hour to go; the post must wake it.
    let ex = ctx.executor();
    let posted = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        ex.post(|| {}).unwrap();
    });
    let watchdog = Watchdog::new(&ctx);
    let ran = ctx.run_one();
    assert!(!watchdog.fired(), "the post did not wake run");
    assert_eq!(ran, 1);
    posted.join().unwrap();
    timer.cancel();
    assert_eq!(ctx.run(), 1);
}

#[test]
fn a_backlog_larger_than_one_turn_is_drained_without_further_wake_ups() {
    // Tasks are taken a bounded number per loop turn; the rest must not wait for a wake-up
    // that no producer will send (one wake covers a burst).
    const TASKS: usize = 20_000;
    let ctx = IoContext::new().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let ex = ctx.executor();
    let r = ran.clone();
    std::thread::spawn(move || {
        for _ in 0..TASKS {
            let r = r.clone();
            ex.post(move || {
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
    })
    .join()
    .unwrap();
    let watchdog = Watchdog::new(&ctx);
    let handled = ctx.run();
    assert!(!watchdog.fired(), "run slept with tasks queued");
    assert_eq!(handled, TASKS);
    assert_eq!(ran.load(Ordering::Relaxed), TASKS);
}
