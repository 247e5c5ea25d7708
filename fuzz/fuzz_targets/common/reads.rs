//! The reads the stream targets keep started: `async_read`, `async_read_some` with a
//! limit, or the two in turn.

use rbeast::net::{FlatBuffer, Transport};
use rbeast::websocket::Stream;
use rbeast::Error;

#[derive(Debug, Clone, Copy)]
pub enum Reads {
    Whole,
    /// `async_read_some` with this limit (0: none).
    Some(usize),
    /// `async_read_some` with a limit of 2 and `async_read` in turn.
    Alternate,
}

impl Reads {
    /// The (whole, limit) of the `k`th read.
    pub fn nth(self, k: usize) -> (bool, usize) {
        match self {
            Reads::Whole => (true, 0),
            Reads::Some(limit) => (false, limit),
            Reads::Alternate if k.is_multiple_of(2) => (false, 2),
            Reads::Alternate => (true, 0),
        }
    }
}

/// Starts the read `how` (as [`Reads::nth`] gives it) into `buffer`.
pub fn start<T: Transport>(
    ws: &Stream<T>,
    buffer: &FlatBuffer,
    how: (bool, usize),
    handler: impl FnOnce(Result<(), Error>, usize) + 'static,
) {
    match how {
        (true, _) => ws.async_read(buffer, handler),
        (false, limit) => ws.async_read_some(buffer, limit, handler),
    }
}
