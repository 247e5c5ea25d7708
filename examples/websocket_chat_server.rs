//! Multi-threaded chat server (Beast's example server/chat-multi): an HTTP page and a
//! WebSocket chat room on the same port. Every message a client sends is broadcast to every
//! connected client, through a per-session write queue.
//!
//! Usage: `websocket_chat_server <address> <port> <threads>`, then open
//! `http://<address>:<port>/` in a browser.
//!
//! Each thread runs its own context with its own listener on the port (`SO_REUSEPORT`).
//! The room is shared: it lists every session with the executor of the context that owns
//! it, and a broadcast posts the message to each session's own thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rbeast::net::{
    AcceptorOptions, ContextPool, Executor, FlatBuffer, IoContext, TcpAcceptor, TcpStream,
};
use rbeast::proto::handshake::{is_upgrade, ParserOptions, RequestParser};
use rbeast::websocket::{Stream, WriteQueue};
use rbeast::Error;

/// The most bytes a session may have waiting to be sent before messages to it are dropped.
const QUEUE_LIMIT: usize = 1 << 20;

/// The chat page, served for `GET /`.
const PAGE: &str = r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>rbeast chat</title></head>
<body>
<h1>rbeast chat</h1>
<pre id="log" style="height:20em;overflow:auto;border:1px solid #888"></pre>
<input id="text" size="60" autofocus> <button id="send">Send</button>
<script>
const log = document.getElementById("log");
const text = document.getElementById("text");
const ws = new WebSocket("ws://" + location.host + "/");
ws.onmessage = (e) => { log.textContent += e.data + "\n"; log.scrollTop = log.scrollHeight; };
ws.onclose = () => { log.textContent += "[disconnected]\n"; };
function send() { if (text.value) { ws.send(text.value); text.value = ""; } }
document.getElementById("send").onclick = send;
text.onkeydown = (e) => { if (e.key === "Enter") send(); };
</script>
</body></html>
"#;

/// Every session in the room, with the executor of the context that owns it.
#[derive(Clone, Default)]
struct Room {
    sessions: Arc<Mutex<HashMap<u64, Executor>>>,
}

thread_local! {
    /// The write queues of this thread's sessions.
    static QUEUES: RefCell<HashMap<u64, WriteQueue<TcpStream>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Room {
    fn join(&self, id: u64, executor: Executor, queue: WriteQueue<TcpStream>) {
        QUEUES.with(|q| q.borrow_mut().insert(id, queue));
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(id, executor);
        }
    }

    fn leave(&self, id: u64) {
        QUEUES.with(|q| q.borrow_mut().remove(&id));
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&id);
        }
    }

    /// Sends `message` to every session, each on its own thread.
    fn broadcast(&self, message: Bytes) {
        // Take a snapshot, so that the lock is not held while posting.
        let snapshot: Vec<(u64, Executor)> = match self.sessions.lock() {
            Ok(sessions) => sessions.iter().map(|(id, ex)| (*id, ex.clone())).collect(),
            Err(_) => return,
        };
        for (id, executor) in snapshot {
            let message = message.clone();
            // A full cross-thread queue drops the message for that session only.
            let _ = executor.post(move || {
                let queue = QUEUES.with(|q| q.borrow().get(&id).cloned());
                if let Some(queue) = queue {
                    queue.send(message, false, |_, _| {});
                }
            });
        }
    }
}

/// A WebSocket session: reads messages and broadcasts them.
fn run_session(ws: Stream<TcpStream>, room: Room, executor: Executor) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    room.join(id, executor, WriteQueue::new(&ws, QUEUE_LIMIT));
    read_loop(ws, FlatBuffer::new(), room, id);
}

fn read_loop(ws: Stream<TcpStream>, buffer: FlatBuffer, room: Room, id: u64) {
    let (w, b) = (ws.clone(), buffer.clone());
    ws.async_read(&buffer, move |r, _| match r {
        Ok(()) => {
            room.broadcast(b.take());
            read_loop(w, b, room, id);
        }
        Err(e) => {
            if e != Error::Closed {
                eprintln!("session {id}: {e}");
            }
            room.leave(id);
        }
    });
}

/// Reads the HTTP request, then upgrades it or serves the page.
fn http_session(sock: TcpStream, room: Room, executor: Executor) {
    let parser = RequestParser::new(ParserOptions::default());
    read_request(sock, FlatBuffer::new(), parser, room, executor);
}

fn read_request(
    sock: TcpStream,
    buf: FlatBuffer,
    mut parser: RequestParser,
    room: Room,
    ex: Executor,
) {
    let (s, b) = (sock.clone(), buf.clone());
    sock.async_read_some(&buf, move |r, _| {
        if r.is_err() {
            return;
        }
        let fed = parser.feed(&b.take());
        match fed {
            Ok(None) => read_request(s, b, parser, room, ex),
            Ok(Some(parsed)) if is_upgrade(&parsed.message) => {
                // Hand the socket and the request to a WebSocket stream (Beast:
                // `async_accept(req)`). A browser sends nothing more before the answer.
                let ws = Stream::new(s);
                let w = ws.clone();
                ws.async_accept_request(&parsed.message, move |r| match r {
                    Ok(()) => run_session(w, room, ex),
                    Err(e) => eprintln!("accept: {e}"),
                });
            }
            Ok(Some(parsed)) => {
                let found = parsed.message.uri().path() == "/";
                let (status, body) = if found {
                    ("200 OK", PAGE)
                } else {
                    ("404 Not Found", "not found\n")
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let s2 = s.clone();
                s.async_write(Bytes::from(response), move |_, _| {
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
            }
            Err(e) => eprintln!("http: {e}"),
        }
    });
}

fn do_accept(acceptor: TcpAcceptor, room: Room, executor: Executor) {
    let a = acceptor.clone();
    acceptor.async_accept(move |r| {
        match r {
            Ok(sock) => http_session(sock, room.clone(), executor.clone()),
            Err(e) => eprintln!("accept: {e}"),
        }
        do_accept(a, room, executor);
    });
}

fn listen(ctx: &IoContext, endpoint: SocketAddr, room: Room) -> Result<(), Error> {
    let options = AcceptorOptions {
        reuse_port: true,
        ..AcceptorOptions::default()
    };
    let acceptor = TcpAcceptor::bind_with(ctx, endpoint, options)?;
    do_accept(acceptor, room, ctx.executor());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("Usage: websocket_chat_server <address> <port> <threads>");
        eprintln!("Example:\n    websocket_chat_server 0.0.0.0 8080 2");
        return ExitCode::FAILURE;
    }
    let (Ok(address), Ok(port), Ok(threads)) = (
        args[1].parse::<IpAddr>(),
        args[2].parse::<u16>(),
        args[3].parse::<usize>(),
    ) else {
        eprintln!("invalid address, port or thread count");
        return ExitCode::FAILURE;
    };
    let endpoint = SocketAddr::new(address, port);
    let room = Room::default();
    let pool = ContextPool::new(threads.max(1), move |ctx, _| {
        if let Err(e) = listen(ctx, endpoint, room.clone()) {
            eprintln!("listen: {e}");
        }
    });
    match pool.map(|p| p.join()) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
