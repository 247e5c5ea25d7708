//! The reactor: our port of asio's `io_context` with its TCP and timer objects.
//!
//! Completion handlers run on the context's thread, from its run loop, exactly once, and
//! never inside the call that started the operation. Objects are cheap clonable handles to
//! state owned by the context's thread (`!Send` on purpose: no locks on the hot path);
//! [`Executor`] is the `Send` door for other threads.

pub(crate) mod buffers;
mod context;
mod executor;
mod flat_buffer;
mod inline_op;
mod pool;
mod readiness;
mod ready_queue;
mod resolver;
pub(crate) mod stream_core;
mod tcp_acceptor;
mod tcp_stream;
mod timer;
mod timer_queue;
mod transport;

pub use context::{Handle, IoContext, DEFAULT_POST_CAPACITY};
pub use executor::{Executor, WorkGuard};
pub(crate) use flat_buffer::Fill;
pub use flat_buffer::FlatBuffer;
pub use pool::ContextPool;
pub use readiness::Readiness;
pub use resolver::Resolver;
pub use tcp_acceptor::{AcceptorOptions, TcpAcceptor};
pub use tcp_stream::TcpStream;
pub use timer::SteadyTimer;
pub use transport::{ReadyListener, Transport};

#[allow(unused_imports)] // the WebSocket layer builds on these
pub(crate) use context::{Flush, IoHandler, IoObject, IoToken, WaitHandler};
pub(crate) use inline_op::WriteJob;
pub(crate) use timer::InternalTimer;
pub(crate) use timer_queue::TimerTarget;
