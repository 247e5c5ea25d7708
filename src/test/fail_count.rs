//! `FailCount` and the fail loop (Beast's `test::fail_count` and `doFailLoop`).

use std::cell::Cell;
use std::rc::Rc;

use crate::Error;

/// Makes the Nth I/O call of a transport fail with [`Error::TestFailure`], and every call
/// after it (Beast's `test::fail_count`). `n = 0` and `n = 1` both fail the first call.
///
/// Clones share one counter, so one `FailCount` can be handed to several transports.
///
/// ```
/// use rbeast::test::FailCount;
/// let fc = FailCount::new(2);
/// assert!(fc.fail().is_ok());
/// assert_eq!(fc.fail(), Err(rbeast::Error::TestFailure));
/// assert_eq!(fc.fail(), Err(rbeast::Error::TestFailure));
/// ```
#[derive(Clone, Debug)]
pub struct FailCount {
    n: usize,
    /// Calls counted so far, and whether a call has failed.
    state: Rc<(Cell<usize>, Cell<bool>)>,
}

impl FailCount {
    /// A counter that fails from the `n`th call on.
    ///
    /// ```
    /// assert!(rbeast::test::FailCount::new(0).fail().is_err());
    /// ```
    pub fn new(n: usize) -> FailCount {
        FailCount {
            n,
            state: Rc::new((Cell::new(0), Cell::new(false))),
        }
    }

    /// Counts one I/O call; fails when the count has reached `n`.
    ///
    /// # Errors
    /// [`Error::TestFailure`] from the `n`th call on.
    ///
    /// ```
    /// let fc = rbeast::test::FailCount::new(1);
    /// assert!(fc.fail().is_err());
    /// ```
    pub fn fail(&self) -> Result<(), Error> {
        let (calls, failed) = &*self.state;
        if calls.get() < self.n {
            calls.set(calls.get() + 1);
        }
        if calls.get() == self.n {
            failed.set(true);
            Err(Error::TestFailure)
        } else {
            Ok(())
        }
    }

    /// True once the counter has failed a call.
    ///
    /// ```
    /// let fc = rbeast::test::FailCount::new(1);
    /// assert!(!fc.tripped());
    /// let _ = fc.fail();
    /// assert!(fc.tripped());
    /// ```
    pub fn tripped(&self) -> bool {
        self.state.1.get()
    }
}

/// Runs `scenario` with `FailCount::new(n)` for n = 0, 1, 2, ... until it completes without
/// error (Beast's `doFailLoop`), and returns the `n` that succeeded.
///
/// Every failing run must fail with exactly [`Error::TestFailure`]: any other error means a
/// failure point surfaced as the wrong error, and the loop panics with it. It also panics
/// when no run succeeds within `limit` tries.
///
/// ```
/// use rbeast::test::{fail_loop, FailCount};
/// // A scenario with three I/O calls succeeds at n = 4.
/// let n = fail_loop(100, |fc: FailCount| {
///     for _ in 0..3 {
///         fc.fail()?;
///     }
///     Ok(())
/// });
/// assert_eq!(n, 4);
/// ```
pub fn fail_loop(limit: usize, mut scenario: impl FnMut(FailCount) -> Result<(), Error>) -> usize {
    for n in 0..limit {
        match scenario(FailCount::new(n)) {
            Ok(()) => return n,
            Err(Error::TestFailure) => continue,
            Err(other) => panic!("fail loop n={n}: expected TestFailure, got {other:?}"),
        }
    }
    panic!("fail loop: no success within {limit} runs");
}
