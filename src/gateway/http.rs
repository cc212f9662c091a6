//! The gateway's HTTP side, on its one `mio` loop: connections, request parsing (`httparse`),
//! responses, and the page streams (server-sent events). GET and HEAD only; no request body;
//! bounded everything: request head, connections, what a slow page stream may have queued.
//! The routes themselves are answered by the event loop (`mod.rs`), which holds the state.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

/// Longest request head (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;
/// A connection that sends no complete request for this long is closed.
pub const IDLE: Duration = Duration::from_secs(10);
/// A page stream with more than this queued is not reading: it is closed.
pub const MAX_STREAM_QUEUE: usize = 256 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HEAD: the headers only.
    pub head: bool,
    /// The path without the query.
    pub path: String,
}

/// Why a request gets no route: the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    MethodNotAllowed,
    HeadTooLarge,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::MethodNotAllowed => 405,
            Refusal::HeadTooLarge => 431,
        }
    }
}

/// Parses a request head: `Ok(None)` while it is incomplete.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request>, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(Refusal::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(_)) => {
            let head = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Err(Refusal::MethodNotAllowed),
            };
            let has_body = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("transfer-encoding")
                    || (h.name.eq_ignore_ascii_case("content-length") && h.value != b"0")
            });
            if has_body {
                return Err(Refusal::BadRequest);
            }
            let target = req.path.unwrap_or("/");
            let path = target.split(['?', '#']).next().unwrap_or("/");
            Ok(Some(Request {
                head,
                path: path.to_string(),
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::HeadTooLarge),
        Err(_) => Err(Refusal::BadRequest),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Headers every response carries: the page loads nothing from elsewhere and is never framed.
const SECURITY: &str = "Content-Security-Policy: default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n";

/// A complete response (the connection closes after it).
pub fn response(status: u16, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{SECURITY}{allow}Connection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// The head of a page stream (server-sent events); the events follow.
pub fn stream_head() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n{SECURITY}X-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\nretry: 2000\n\n"
    )
    .into_bytes()
}

/// One server-sent event (`data` is one line of JSON).
pub fn event(name: &str, data: &str) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// One HTTP connection.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// A page stream: stays open, gets events.
    pub streaming: bool,
    /// The response is queued: close once it is written.
    pub closing: bool,
    /// Bytes a page stream may have queued beyond [`MAX_STREAM_QUEUE`] (its first event).
    pub allowance: usize,
    pub opened: Instant,
}

/// What reading a connection gave.
pub enum Input {
    /// Nothing complete yet.
    Waiting,
    Request(Request),
    Refused(Refusal),
    /// The peer closed or failed.
    Closed,
}

impl Conn {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            stream,
            peer,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            streaming: false,
            closing: false,
            allowance: 0,
            opened: Instant::now(),
        }
    }

    /// Reads what is there; a request is answered once (later bytes are ignored).
    pub fn read(&mut self) -> Input {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Input::Closed,
                Ok(n) => {
                    if self.streaming || self.closing {
                        continue; // nothing more is read from a connection being answered
                    }
                    self.rbuf.extend_from_slice(&chunk[..n]);
                    if self.rbuf.len() > MAX_HEAD + chunk.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Input::Closed,
            }
        }
        if self.streaming || self.closing {
            return Input::Waiting;
        }
        match parse_request(&self.rbuf) {
            Ok(None) => Input::Waiting,
            Ok(Some(r)) => Input::Request(r),
            Err(refusal) => Input::Refused(refusal),
        }
    }

    pub fn queue(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    pub fn queued(&self) -> usize {
        self.wbuf.len()
    }

    /// Writes what the socket takes; `Err` when the connection is done (closed or failed).
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.closing {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_get_or_head_without_a_body() {
        let ok = parse_request(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(
            ok,
            Some(Request {
                head: false,
                path: "/metrics".into()
            })
        );
        assert!(
            parse_request(b"HEAD / HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .head
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n"), Ok(None));
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"),
            Err(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"),
            Err(Refusal::BadRequest)
        );
        assert_eq!(
            parse_request(b"\x00\x01 nonsense\r\n\r\n"),
            Err(Refusal::BadRequest)
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
        assert_eq!(parse_request(&long), Err(Refusal::HeadTooLarge));
    }

    #[test]
    fn responses_carry_length_and_the_security_headers() {
        let r = String::from_utf8(response(404, "text/plain", b"no", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 2\r\n") && r.ends_with("\r\n\r\nno"));
        assert!(r.contains("Content-Security-Policy: default-src 'self'"));
        let h = String::from_utf8(response(200, "text/plain", b"abc", true)).unwrap();
        assert!(h.contains("Content-Length: 3") && h.ends_with("\r\n\r\n"));
        assert_eq!(event("state", "{}"), b"event: state\ndata: {}\n\n");
    }
}
