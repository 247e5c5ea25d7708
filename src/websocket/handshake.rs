//! The opening handshake operations: the client's `async_handshake` and the server's
//! `async_accept` family, driven by the stream's engine.

use std::cell::RefCell;
use std::rc::Rc;

use http::Request;

use super::core::{Core, Status};
use crate::net::{Handle, Transport, WaitHandler};
use crate::proto::handshake::{
    accept, AcceptDecision, ClientConfig, ClientHandshake, Negotiated, Parsed, ParserOptions,
    RequestParser, RequestType, ResponseParser, ResponseType, ServerConfig,
};
use crate::{Error, Role};

/// The handler of a client handshake that also hands back the server's response.
pub(crate) type ClientHandler = Box<dyn FnOnce(Result<(), Error>, Option<ResponseType>)>;

pub(crate) type RequestDecorator = Rc<RefCell<dyn FnMut(&mut RequestType)>>;
pub(crate) type ResponseDecorator = Rc<RefCell<dyn FnMut(&mut ResponseType)>>;
pub(crate) type AcceptHookFn = Rc<RefCell<dyn FnMut(&RequestType) -> AcceptDecision>>;

/// Settings of the opening handshake.
#[derive(Default)]
pub(crate) struct HandshakeSettings {
    /// Allocated only when the application sets any of them (most streams never do).
    hooks: Option<Box<HandshakeHooks>>,
    /// What the last handshake agreed on.
    pub(crate) negotiated: Negotiated,
}

/// The application's choices for the opening handshake.
#[derive(Default)]
pub(crate) struct HandshakeHooks {
    pub(crate) parser: ParserOptions,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) request_decorator: Option<RequestDecorator>,
    pub(crate) response_decorator: Option<ResponseDecorator>,
    pub(crate) accept_hook: Option<AcceptHookFn>,
}

impl HandshakeSettings {
    /// The choices, for setting one.
    pub(crate) fn hooks_mut(&mut self) -> &mut HandshakeHooks {
        self.hooks.get_or_insert_with(Box::default)
    }

    fn hooks(&self) -> Option<&HandshakeHooks> {
        self.hooks.as_deref()
    }

    fn parser(&self) -> ParserOptions {
        self.hooks().map(|h| h.parser).unwrap_or_default()
    }
}

/// A handshake in progress.
pub(crate) enum HandshakeOp {
    /// Client: the request is queued; reading the response.
    Client {
        request: Box<ClientHandshake>,
        parser: ResponseParser,
        handler: ClientHandler,
    },
    /// Server: reading the upgrade request.
    ServerRead {
        parser: RequestParser,
        handler: WaitHandler,
    },
    /// Server: the response is queued; completing once it is written.
    ServerReply {
        result: Result<Negotiated, Error>,
        handler: WaitHandler,
    },
}

impl HandshakeOp {
    /// Completes the operation (queued on the context).
    pub(crate) fn complete(
        self,
        handle: &Handle,
        result: Result<(), Error>,
        response: Option<ResponseType>,
    ) {
        match self {
            HandshakeOp::Client { handler, .. } => {
                handle.complete_fn(Box::new(move || handler(result, response)))
            }
            HandshakeOp::ServerRead { handler, .. } | HandshakeOp::ServerReply { handler, .. } => {
                handle.complete_wait(handler, result)
            }
        }
    }
}

/// The outcome of reading an HTTP message during the handshake.
enum Head<M> {
    Ready(M),
    Pending,
    Failed(Error),
}

/// A copy of `req` without its body (the accept operations need only the header).
pub(crate) fn header_of<B>(req: &Request<B>) -> RequestType {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

impl<T: Transport> Core<T> {
    /// Starts a client handshake: builds and queues the request.
    pub(crate) fn start_client_handshake(
        &mut self,
        host: &str,
        target: &str,
        handler: ClientHandler,
    ) -> Result<(), (ClientHandler, Error)> {
        let config = ClientConfig {
            deflate: self.pmd.opts(),
            subprotocols: self
                .hs
                .hooks()
                .map(|h| h.subprotocols.clone())
                .unwrap_or_default(),
        };
        let built = match self.hs.hooks().and_then(|h| h.request_decorator.clone()) {
            Some(d) => ClientHandshake::with_decorator(host, target, &config, &mut *d.borrow_mut()),
            None => ClientHandshake::new(host, target, &config),
        };
        let request = match built {
            Ok(r) => r,
            Err(e) => return Err((handler, e)),
        };
        let mut bytes = Vec::new();
        request.write_to(&mut bytes);
        self.out.push_copy(&bytes);
        self.role = Role::Client;
        self.status = Status::Handshake;
        self.rd_buf.clear();
        self.hs_op = Some(Box::new(HandshakeOp::Client {
            request: Box::new(request),
            parser: ResponseParser::new(self.hs.parser()),
            handler,
        }));
        Ok(())
    }

    /// Starts a server accept; `already_read` are bytes the caller read from the transport.
    pub(crate) fn start_accept(&mut self, already_read: &[u8], handler: WaitHandler) {
        self.role = Role::Server;
        self.status = Status::Handshake;
        self.rd_buf.clear();
        self.rd_buf.extend_from_slice(already_read);
        self.hs_op = Some(Box::new(HandshakeOp::ServerRead {
            parser: RequestParser::new(self.hs.parser()),
            handler,
        }));
    }

    /// Answers an upgrade request that was read elsewhere.
    pub(crate) fn start_accept_request(&mut self, request: &RequestType, handler: WaitHandler) {
        self.role = Role::Server;
        self.status = Status::Handshake;
        self.rd_buf.clear();
        let result = self.queue_response(request);
        self.hs_op = Some(Box::new(HandshakeOp::ServerReply { result, handler }));
    }

    /// Builds the response to `request` (101, Beast's 400/426, or the hook's rejection),
    /// queues it, and returns what the accept completes with.
    fn queue_response(&mut self, request: &RequestType) -> Result<Negotiated, Error> {
        let config = ServerConfig {
            deflate: self.pmd.opts(),
        };
        let hook = self.hs.hooks().and_then(|h| h.accept_hook.clone());
        let decorator = self.hs.hooks().and_then(|h| h.response_decorator.clone());
        let mut no_decorator = |_: &mut ResponseType| {};
        let mut hook_guard = hook.as_ref().map(|h| h.borrow_mut());
        let hook_ref = hook_guard
            .as_mut()
            .map(|h| &mut **h as &mut dyn FnMut(&RequestType) -> AcceptDecision);
        let answer = match decorator.as_ref() {
            Some(d) => accept(request, &config, hook_ref, &mut *d.borrow_mut()),
            None => accept(request, &config, hook_ref, &mut no_decorator),
        };
        let mut bytes = Vec::new();
        answer.write_to(&mut bytes);
        self.out.push_copy(&bytes);
        answer.result
    }

    /// Reads until `feed` has a whole HTTP message; bytes after it stay in the read buffer
    /// (frame data).
    fn read_head<M>(
        &mut self,
        mut feed: impl FnMut(&[u8]) -> Result<Option<Parsed<M>>, Error>,
    ) -> Head<M> {
        loop {
            if !self.rd_buf.is_empty() {
                match feed(self.rd_buf.data()) {
                    Err(e) => return Head::Failed(e),
                    Ok(None) => self.rd_buf.clear(),
                    Ok(Some(parsed)) => {
                        self.rd_buf.advance(parsed.consumed);
                        return Head::Ready(parsed.message);
                    }
                }
            }
            match self.fill() {
                Ok(true) => continue,
                Ok(false) => return Head::Pending,
                Err(e) => return Head::Failed(e),
            }
        }
    }

    /// The handshake failed with `e`: the error to complete with.
    fn handshake_failed(&mut self, e: Error) -> Error {
        self.status = Status::Failed;
        self.deliver(e)
    }

    /// Advances the handshake in progress. Returns true when something happened.
    pub(crate) fn advance_handshake(&mut self, handle: &Handle) -> bool {
        let Some(op) = self.hs_op.take() else {
            return false;
        };
        match *op {
            HandshakeOp::Client {
                request,
                mut parser,
                handler,
            } => match self.read_head(|bytes| parser.feed(bytes)) {
                Head::Pending => {
                    self.hs_op = Some(Box::new(HandshakeOp::Client {
                        request,
                        parser,
                        handler,
                    }));
                    false
                }
                Head::Failed(e) => {
                    let e = self.handshake_failed(e);
                    handle.complete_fn(Box::new(move || handler(Err(e), None)));
                    true
                }
                Head::Ready(response) => {
                    let result = match request.check_response(&response) {
                        Ok(negotiated) => {
                            self.open(Role::Client);
                            self.pmd_open(Role::Client, negotiated.deflate);
                            self.hs.negotiated = negotiated;
                            Ok(())
                        }
                        Err(e) => Err(self.handshake_failed(e)),
                    };
                    handle.complete_fn(Box::new(move || handler(result, Some(response))));
                    true
                }
            },
            HandshakeOp::ServerRead {
                mut parser,
                handler,
            } => {
                match self.read_head(|bytes| parser.feed(bytes)) {
                    Head::Pending => {
                        self.hs_op = Some(Box::new(HandshakeOp::ServerRead { parser, handler }));
                        false
                    }
                    Head::Failed(e) => {
                        // Beast: end of stream before a request is `closed`.
                        let e = if e == Error::Eof { Error::Closed } else { e };
                        let e = self.handshake_failed(e);
                        handle.complete_wait(handler, Err(e));
                        true
                    }
                    Head::Ready(request) => {
                        let result = self.queue_response(&request);
                        self.hs_op = Some(Box::new(HandshakeOp::ServerReply { result, handler }));
                        true
                    }
                }
            }
            HandshakeOp::ServerReply { result, handler } => {
                if !self.out.is_empty() {
                    self.hs_op = Some(Box::new(HandshakeOp::ServerReply { result, handler }));
                    return false;
                }
                let result = match result {
                    Ok(negotiated) => {
                        self.open(Role::Server);
                        self.pmd_open(Role::Server, negotiated.deflate);
                        self.hs.negotiated = negotiated;
                        Ok(())
                    }
                    // The response went out; the connection is left open, as in Beast.
                    Err(e) => Err(self.handshake_failed(e)),
                };
                handle.complete_wait(handler, result);
                true
            }
        }
    }
}
