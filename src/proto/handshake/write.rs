//! Serialising requests and responses to HTTP/1.1 bytes.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Request, Response, StatusCode, Version};

/// Appends the bytes of an upgrade request (request line, fields, empty line) to `out`.
///
/// Field names are written in their usual capitalisation (`Sec-WebSocket-Key`), since the
/// [`http`] crate stores them in lower case. The body type is ignored: an upgrade request
/// has no body.
///
/// ```
/// let req = http::Request::get("/chat").header("host", "example.com").body(()).unwrap();
/// let mut out = Vec::new();
/// rbeast::proto::handshake::write_request(&req, &mut out);
/// assert_eq!(out, b"GET /chat HTTP/1.1\r\nHost: example.com\r\n\r\n");
/// ```
pub fn write_request<B>(req: &Request<B>, out: &mut Vec<u8>) {
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    match req.uri().path_and_query() {
        Some(pq) if req.uri().authority().is_none() => {
            out.extend_from_slice(pq.as_str().as_bytes())
        }
        _ => out.extend_from_slice(req.uri().to_string().as_bytes()),
    }
    out.push(b' ');
    out.extend_from_slice(version_str(req.version()).as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(req.headers(), out, false);
    out.extend_from_slice(b"\r\n");
}

/// Appends the bytes of a response (status line, fields, empty line, body) to `out`.
///
/// Unless the status is `1xx`, `204` or `304`, a `Content-Length` matching the body is written
/// (any `Content-Length` or `Transfer-Encoding` field of the message is replaced by it), so the
/// bytes are always a well-framed message even if a decorator changed the body.
///
/// ```
/// let res = http::Response::builder().status(400).body(b"bad".to_vec()).unwrap();
/// let mut out = Vec::new();
/// rbeast::proto::handshake::write_response(&res, &mut out);
/// assert_eq!(out, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad");
/// ```
pub fn write_response<B: AsRef<[u8]>>(res: &Response<B>, out: &mut Vec<u8>) {
    let status = res.status();
    out.extend_from_slice(version_str(res.version()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let framed = has_body(status);
    write_fields(res.headers(), out, framed);
    let body = res.body().as_ref();
    if framed {
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if framed {
        out.extend_from_slice(body);
    }
}

/// Whether a response with this status carries a body framed by `Content-Length`.
pub(crate) fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

fn version_str(v: Version) -> &'static str {
    if v == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    }
}

fn write_fields(headers: &HeaderMap, out: &mut Vec<u8>, skip_framing: bool) {
    for (name, value) in headers {
        if skip_framing && (name == CONTENT_LENGTH || name == TRANSFER_ENCODING) {
            continue;
        }
        write_name(name.as_str(), out);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes a lower-case field name with its usual capitalisation.
fn write_name(name: &str, out: &mut Vec<u8>) {
    let known = match name {
        "sec-websocket-key" => Some("Sec-WebSocket-Key"),
        "sec-websocket-accept" => Some("Sec-WebSocket-Accept"),
        "sec-websocket-version" => Some("Sec-WebSocket-Version"),
        "sec-websocket-protocol" => Some("Sec-WebSocket-Protocol"),
        "sec-websocket-extensions" => Some("Sec-WebSocket-Extensions"),
        _ => None,
    };
    if let Some(k) = known {
        out.extend_from_slice(k.as_bytes());
        return;
    }
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes() {
        let req = Request::get("/a?b=c")
            .header("host", "h:1")
            .header("sec-websocket-key", "k")
            .header("x-custom-thing", "v")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        write_request(&req, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a?b=c HTTP/1.1\r\nHost: h:1\r\nSec-WebSocket-Key: k\r\nX-Custom-Thing: v\r\n\r\n"
        );
    }

    #[test]
    fn response_framing() {
        let res = Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .body(Vec::new())
            .unwrap();
        let mut out = Vec::new();
        write_response(&res, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
        );

        let res = Response::builder()
            .status(404)
            .version(Version::HTTP_10)
            .header("content-length", "99")
            .header("transfer-encoding", "chunked")
            .body(b"nope".to_vec())
            .unwrap();
        let mut out = Vec::new();
        write_response(&res, &mut out);
        assert_eq!(
            out,
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"
        );
    }
}
