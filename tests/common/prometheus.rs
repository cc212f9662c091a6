//! Prometheus for the gateway's tests: the text format parsed independently of the gateway,
//! `promtool check metrics`, and a real `prometheus` server scraping the gateway.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{self, free_port, wait_for_port};
use super::proc::Proc;

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const PROMTOOL: &str = "/usr/bin/promtool";

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a text-format exposition (comments skipped). Label values are unescaped
/// (`\\`, `\"`, `\n`). Panics on a line it cannot read.
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("metrics line without a value: {line:?}"),
        };
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            let mut key = String::new();
            let end = loop {
                let Some((i, c)) = chars.next() else {
                    panic!("unterminated labels: {line:?}")
                };
                match c {
                    '}' => break i,
                    ',' | ' ' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|(_, c)| c) {
                                Some('"') => break,
                                Some('\\') => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(c) => value.push(c),
                                    None => panic!("{line:?}"),
                                },
                                Some(c) => value.push(c),
                                None => panic!("unterminated label value: {line:?}"),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            };
            &body[end + 1..]
        } else {
            rest
        };
        let value_text = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("value {v:?} in {line:?}: {e}")),
        };
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    out
}

/// The samples named `name` whose labels include every `(key, value)` of `labels`.
pub fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// The one sample named `name` with these labels; panics if there is none or several.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, labels);
    assert_eq!(
        found.len(),
        1,
        "expected one sample {name}{labels:?}, found {found:?}"
    );
    found[0].value
}

/// `promtool check metrics` on `text` (stdin): its exit status and everything it printed.
pub fn promtool_check(text: &str) -> (std::process::ExitStatus, String) {
    assert!(
        Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} is missing: scripts/system-deps.sh installs it (apt-get install prometheus)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, printed)
}

/// A running Prometheus server scraping one target every second.
pub struct Prometheus {
    port: u16,
    proc: Proc,
}

impl Prometheus {
    /// Starts `prometheus` with its config, TSDB and log in `dir`, scraping `target` (job
    /// `inspectord-gateway`); returns once it is ready.
    pub fn start(dir: &Path, target: SocketAddr) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).is_file(),
            "{PROMETHEUS} is missing: scripts/system-deps.sh installs it (apt-get install prometheus)"
        );
        std::fs::create_dir_all(dir).expect("create prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: inspectord-gateway\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(PROMETHEUS);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir);
        let mut proc = Proc::spawn("prometheus", cmd, &dir.join("prometheus.log"));
        wait_for_port(port, Duration::from_secs(30), "prometheus", || proc.alive());
        let p = Prometheus { port, proc };
        let ready = super::wait_until(Duration::from_secs(30), || {
            http::request(
                ("127.0.0.1", port),
                "GET",
                "/-/ready",
                None,
                Duration::from_secs(2),
            )
            .is_ok_and(|r| r.status == 200)
        });
        assert!(ready, "prometheus never became ready:\n{}", p.proc.log());
        p
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// `GET path` from its HTTP API, as JSON with `status` "success" (panics otherwise).
    pub fn api(&self, path: &str) -> Value {
        let r = http::get(("127.0.0.1", self.port), path);
        let v = r.json();
        assert_eq!(r.status, 200, "{path}: {v}");
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// `/api/v1/targets`: the active targets.
    pub fn targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets")["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// An instant query (`/api/v1/query`): the result vector.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        let q: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_-.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.api(&format!("/api/v1/query?query={q}"))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls until the first target's health is "up"; returns it (panics after `timeout`).
    pub fn wait_target_up(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let targets = self.targets();
            if let Some(t) = targets.iter().find(|t| t["health"] == "up") {
                return t.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no target up within {timeout:?}: {targets:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
