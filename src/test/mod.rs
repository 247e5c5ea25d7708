//! Testing tools, public like Beast's `test::stream`: an in-memory connected transport,
//! failure injection, and handler checkers. Applications test their own handler-based code
//! with them; so does rbeast.

mod fail_count;
mod handler;
mod stream;

pub use fail_count::{fail_loop, FailCount};
pub use handler::{any_handler, fail_handler, fail_wait, success_handler, success_wait};
pub use stream::Stream;
