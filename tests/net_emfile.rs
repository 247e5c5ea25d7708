//! Running out of file descriptors: `async_accept` reports EMFILE to its handler and the
//! acceptor backs off (100 ms) instead of spinning.
//!
//! The scenario runs in a child process with a low descriptor limit: the parent test
//! re-executes this test binary through `sh -c 'ulimit -n 64; exec ...'`, selecting the
//! ignored child test and marking child mode with an environment variable.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use rbeast::net::{IoContext, SteadyTimer, TcpAcceptor};
use rbeast::Error;

const CHILD_ENV: &str = "RBEAST_EMFILE_CHILD";
const CHILD_TEST: &str = "emfile_child";
/// The acceptor's documented pause after EMFILE.
const BACKOFF: Duration = Duration::from_millis(100);
/// How long the child keeps re-accepting while out of descriptors.
const STARVED_FOR: Duration = Duration::from_millis(300);
const EMFILE: i32 = 24;

#[test]
fn accept_reports_emfile_and_backs_off_instead_of_spinning() {
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ulimit -n 64 || exit 97; exec \"$0\" --exact {CHILD_TEST} --nocapture --ignored --test-threads 1"
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&exe)
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "child failed ({:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed") && stdout.contains("emfile:"),
        "the child test did not run\n{stdout}"
    );
    for line in stdout.lines().filter(|l| l.starts_with("emfile:")) {
        println!("{line}");
    }
}

/// CPU time (user + system) of the calling thread so far, read through a file opened
/// beforehand (no descriptor is needed while the table is full). Linux reports it in
/// USER_HZ = 100 ticks per second.
fn thread_cpu(stat: &File) -> Duration {
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    let after_name = &text[text.rfind(')').unwrap() + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted from the state field (3).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[derive(Default)]
struct Observed {
    /// EMFILE errors delivered to the accept handler.
    emfile: Cell<usize>,
    /// Errors at the end of the starved window, with its measured length and CPU time.
    at_deadline: Cell<Option<(usize, Duration, Duration)>>,
    accepted_peer: Cell<Option<SocketAddr>>,
    other_error: RefCell<Option<Error>>,
}

fn accept_loop(acceptor: TcpAcceptor, seen: Rc<Observed>) {
    let again = acceptor.clone();
    acceptor.async_accept(move |r| match r {
        Ok(sock) => seen.accepted_peer.set(sock.peer_addr().ok()),
        Err(Error::Io(e)) if e.raw_os_error() == Some(EMFILE) => {
            seen.emfile.set(seen.emfile.get() + 1);
            accept_loop(again, seen);
        }
        Err(e) => *seen.other_error.borrow_mut() = Some(e),
    });
}

#[test]
#[ignore = "runs only as the child of accept_reports_emfile_and_backs_off_instead_of_spinning"]
fn emfile_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("{CHILD_TEST} needs a low descriptor limit; run it through its parent test");
        return;
    }
    let stat = File::open("/proc/thread-self/stat").unwrap();
    let ctx = IoContext::new().unwrap();
    let acceptor = TcpAcceptor::bind(&ctx, "127.0.0.1:0".parse().unwrap()).unwrap();
    // The kernel completes the handshake: the connection waits in the backlog.
    let client = std::net::TcpStream::connect(acceptor.local_addr().unwrap()).unwrap();
    let client_addr = client.local_addr().unwrap();

    // Fill the descriptor table.
    let mut fillers = Vec::new();
    let full = loop {
        match File::open("/dev/null") {
            Ok(f) => fillers.push(f),
            Err(e) => break e,
        }
        assert!(
            fillers.len() < 100_000,
            "the descriptor limit was not lowered"
        );
    };
    assert_eq!(full.raw_os_error(), Some(EMFILE), "{full:?}");
    let fillers = Rc::new(RefCell::new(fillers));

    let seen = Rc::new(Observed::default());
    let start = Instant::now();
    let cpu_start = thread_cpu(&stat);
    accept_loop(acceptor.clone(), seen.clone());
    assert_eq!(seen.emfile.get(), 0, "not inline");

    // After the starved window, free the descriptors: the pending accept must then succeed.
    let deadline = SteadyTimer::new(&ctx);
    deadline.expires_after(STARVED_FOR);
    {
        let (seen, fillers) = (seen.clone(), fillers.clone());
        deadline.async_wait(move |r| {
            r.unwrap();
            let cpu = thread_cpu(&stat) - cpu_start;
            seen.at_deadline
                .set(Some((seen.emfile.get(), start.elapsed(), cpu)));
            fillers.borrow_mut().clear();
        });
    }
    ctx.run_for(Duration::from_secs(20));

    assert_eq!(*seen.other_error.borrow(), None);
    let (attempts, elapsed, cpu) = seen.at_deadline.get().expect("the deadline fired");
    println!(
        "emfile: {attempts} EMFILE completions and {cpu:?} of CPU in {elapsed:?} out of descriptors"
    );
    assert!(attempts >= 1, "EMFILE was never reported to the handler");
    // One attempt at once, then at most one per back-off period (plus one for rounding).
    let bound = 2 + (elapsed.as_millis() / BACKOFF.as_millis()) as usize;
    assert!(
        attempts <= bound,
        "{attempts} accept attempts in {elapsed:?}: the acceptor spins (bound {bound})"
    );
    // A spinning loop burns about all of the window; a backing-off one almost none.
    assert!(
        cpu < elapsed / 2,
        "the thread used {cpu:?} of CPU in {elapsed:?}: the loop spins"
    );
    assert_eq!(
        seen.accepted_peer.get(),
        Some(client_addr),
        "the waiting connection was accepted once descriptors were free"
    );
}
