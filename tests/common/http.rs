//! A minimal HTTP/1.1 client over `std::net::TcpStream` (one request per connection,
//! `Connection: close`): enough for the gateway's routes, the Prometheus API and WebDriver.
//! Chunked bodies are decoded; nothing else (no TLS, no redirects, no keep-alive).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (panics if it is not).
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("an HTTP body in UTF-8")
    }

    /// The body as JSON (panics naming the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `METHOD path` to `addr` with an optional JSON body; reads the whole response (at most
/// `timeout`). Errors are connection/protocol errors as text (the caller decides to retry).
pub fn request(
    addr: impl ToSocketAddrs,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, String> {
    let addr: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolve: {e}"))?
        .next()
        .ok_or("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\nUser-Agent: inspectord-tests\r\n"
    );
    if let Some(b) = body {
        head += &format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    head += "\r\n";
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body.unwrap_or_default()))
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                // Some servers (chromedriver) keep the connection open despite `close`.
                if complete(&raw, method == "HEAD") {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{method} {path}: no complete response from {addr} within {timeout:?} ({} bytes so far)",
                raw.len()
            ));
        }
    }
    parse(&raw, method == "HEAD").map_err(|e| format!("{method} {path} from {addr}: {e}"))
}

/// `GET path` from `addr`; panics on a connection error.
pub fn get(addr: impl ToSocketAddrs + std::fmt::Debug, path: &str) -> Response {
    let what = format!("{addr:?}");
    request(addr, "GET", path, None, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {path} from {what}: {e}"))
}

/// Whether `raw` holds a whole response: headers and a body of the length they announce (or
/// the last chunk). Without a length the body runs to EOF.
fn complete(raw: &[u8], head_only: bool) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = &raw[end + 4..];
    if head_only || head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304") {
        return true;
    }
    let header = |name: &str| {
        head.split("\r\n")
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    if header("transfer-encoding:").is_some_and(|t| t == "chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    match header("content-length:").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) => body.len() >= n,
        None => false,
    }
}

fn parse(raw: &[u8], head_only: bool) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("headers: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut r = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[end + 4..];
    if head_only {
        return Ok(r);
    }
    r.body = if r
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(n) = r.header("content-length") {
        let n: usize = n
            .parse()
            .map_err(|e| format!("content-length {n:?}: {e}"))?;
        if rest.len() < n {
            return Err(format!("body is {} bytes, content-length {n}", rest.len()));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(r)
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line missing")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released: another process could take it in
/// between, which the callers' start-up checks would report).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; `alive` is asked between
/// attempts and returns an error text when the server died. Panics after `timeout`.
pub fn wait_for_port(
    port: u16,
    timeout: Duration,
    what: &str,
    mut alive: impl FnMut() -> Result<(), String>,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Err(e) = alive() {
            panic!("{what} died before serving port {port}: {e}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not accept connections on port {port} within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
