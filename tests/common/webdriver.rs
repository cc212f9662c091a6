//! A minimal W3C WebDriver client (std `TcpStream` + serde_json) driving headless Debian
//! chromium through `/usr/bin/chromedriver`.
//!
//! Checked against chromedriver/chromium 156: a session with `goog:loggingPrefs {browser: ALL}`
//! returns the console through `POST /session/{id}/se/log {"type":"browser"}` (entries with
//! `level` "SEVERE" for `console.error` and failed loads); each read drains what it returned, so
//! [`Session::browser_log`] keeps everything read so far.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{self, free_port, wait_for_port};
use super::proc::Proc;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver.
pub struct ChromeDriver {
    port: u16,
    dir: PathBuf,
    proc: Proc,
}

impl ChromeDriver {
    /// Starts `chromedriver --port=P` (its log in `dir`, created); returns once `/status` says
    /// ready.
    pub fn start(dir: &Path) -> ChromeDriver {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} is missing: scripts/system-deps.sh installs it (apt-get install chromium chromium-driver)"
            );
        }
        std::fs::create_dir_all(dir).expect("create chromedriver dir");
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"));
        let mut proc = Proc::spawn("chromedriver", cmd, &dir.join("chromedriver.log"));
        wait_for_port(port, Duration::from_secs(20), "chromedriver", || {
            proc.alive()
        });
        let d = ChromeDriver {
            port,
            dir: dir.to_path_buf(),
            proc,
        };
        let ready = super::wait_until(Duration::from_secs(20), || {
            d.call("GET", "/status", None)
                .is_ok_and(|v| v["ready"] == true)
        });
        assert!(ready, "chromedriver never ready:\n{}", d.proc.log());
        d
    }

    /// One command: its `value`, or the WebDriver error as text.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string().into_bytes());
        let r = http::request(
            ("127.0.0.1", self.port),
            method,
            path,
            body.as_deref(),
            Duration::from_secs(60),
        )?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| {
            format!(
                "{method} {path}: {} {e}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            )
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if r.status != 200 {
            return Err(format!(
                "{method} {path}: HTTP {}: {} {}",
                r.status, value["error"], value["message"]
            ));
        }
        Ok(value)
    }

    /// A new session of headless chromium (a profile of its own in the driver's dir).
    pub fn session(&self) -> Session<'_> {
        let profile = self.dir.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    // DevTools over a pipe, not a localhost TCP port: in a minimal Debian
                    // chroot chromedriver 150 cannot reach the renderer through "localhost".
                    "--remote-debugging-pipe",
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,800",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = self
            .call("POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("new session: {e}\n{}", self.proc.log()));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {v}"))
            .to_string();
        Session {
            driver: self,
            id,
            log: Vec::new(),
            deleted: false,
        }
    }
}

/// A browser session; deleted (the browser quits) when dropped.
pub struct Session<'a> {
    driver: &'a ChromeDriver,
    id: String,
    log: Vec<Value>,
    deleted: bool,
}

impl Session<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let full = format!("/session/{}{path}", self.id);
        self.driver
            .call(method, &full, body.as_ref())
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    /// Navigates and waits for the page's load event.
    pub fn navigate(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The elements matching a CSS selector (their WebDriver ids).
    pub fn find_all(&self, css: &str) -> Vec<String> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        self.find_all(css).into_iter().next()
    }

    /// An element's rendered text.
    pub fn element_text(&self, element: &str) -> String {
        self.cmd("GET", &format!("/element/{element}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The rendered text of the first element matching `css`, if there is one.
    pub fn text(&self, css: &str) -> Option<String> {
        self.find(css).map(|e| self.element_text(&e))
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Saves a PNG screenshot of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let b64 = self.cmd("GET", "/screenshot", None);
        let bytes = base64_decode(b64.as_str().expect("base64 text"));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Every browser console entry so far (`{level, message, source, timestamp}`).
    pub fn browser_log(&mut self) -> Vec<Value> {
        let new = self.cmd("POST", "/se/log", Some(json!({"type": "browser"})));
        self.log.extend(new.as_array().cloned().unwrap_or_default());
        self.log.clone()
    }

    /// The `SEVERE` console entries so far.
    pub fn severe(&mut self) -> Vec<Value> {
        self.browser_log()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    }

    /// Polls `probe` every 100 ms until it gives `Some`; panics after `timeout` naming `what`
    /// and the last value it saw (`describe`).
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut(&Self) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            match probe(self) {
                Ok(t) => return t,
                Err(last) if Instant::now() >= deadline => {
                    panic!("the page never showed {what} within {timeout:?}; last: {last}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Ends the session (the browser quits).
    pub fn delete(mut self) {
        self.deleted = true;
        self.cmd("DELETE", "", None);
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = self
                .driver
                .call("DELETE", &format!("/session/{}", self.id), None);
        }
    }
}

/// Standard base64 (with padding) to bytes; panics on any other character.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let digit = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let data: Vec<u8> = clean.iter().copied().take_while(|&b| b != b'=').collect();
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= digit(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
