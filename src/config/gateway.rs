//! The gateway's config (`inspectord gateway --config gateway.toml`): compiled like the
//! daemon's and the bridge's, every problem with its dotted key path and line, unknown keys
//! refused. `[mqtt]` is optional: without it the gateway publishes nothing.
//!
//! ```toml
//! [daemon]
//! socket = "/run/inspectord/verdicts.sock"
//! reconnect_initial_ms = 200
//! reconnect_max_ms = 5000
//! status_poll_ms = 1000
//!
//! [http]
//! listen = "127.0.0.1:9851"
//! failures_dir = "/var/lib/inspectord/failures"
//! chart_points = 600
//! gallery = 12
//! max_clients = 32
//!
//! [mqtt]
//! broker = "127.0.0.1:1883"
//! line = "line-1"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::{Document, Reader, Section};
use super::{ConfigErrors, ConfigWarning, defaults};

/// The validated gateway config.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub path: PathBuf,
    /// The daemon's verdict socket.
    pub socket: PathBuf,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// How often the daemon is asked for a snapshot (counters, histograms).
    pub status_poll: Duration,
    /// Where the page and `/metrics` are served.
    pub listen: SocketAddr,
    /// The daemon's failure images, shown read-only in the page's gallery.
    pub failures_dir: Option<PathBuf>,
    pub chart_points: usize,
    pub gallery: usize,
    pub max_clients: usize,
    pub mqtt: Option<MqttConfig>,
    pub warnings: Vec<ConfigWarning>,
}

/// `[mqtt]`: where verdicts go for the plant.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// `host:port` (a name is resolved at each connect).
    pub broker: String,
    /// This line's name in the topics: `<topic_prefix>/<line>/…`.
    pub line: String,
    pub topic_prefix: String,
    pub client_id: String,
    pub username: Option<String>,
    /// A file holding the password (under systemd: a credential).
    pub password_file: Option<PathBuf>,
    pub keep_alive: Duration,
    /// QoS 1 publishes awaiting the broker's PUBACK at once.
    pub max_inflight: usize,
    /// Verdicts held for the broker; beyond it the daemon's retention is the buffer.
    pub outbox: usize,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// The last verdict the broker acknowledged, persisted across restarts.
    pub state_file: PathBuf,
}

const NAMES: &[&str] = &["daemon", "http", "mqtt"];

/// A topic level or client id part: what needs no escaping anywhere.
fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl GatewayConfig {
    /// Reads and validates a gateway config file.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigErrors> {
        Self::parse(path, &super::read_config_file(path)?)
    }

    /// Validates gateway config text; `path` names the file and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<GatewayConfig, ConfigErrors> {
        let fail = |errors| ConfigErrors {
            path: path.into(),
            errors,
        };
        let doc = Document::parse(text).map_err(|e| fail(vec![e]))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut r = Reader::new(text, base);
        r.check_sections(&doc, NAMES);

        let mut d = doc.section("daemon");
        let socket = r.path(&mut d, "socket", false);
        let cap = defaults::BRIDGE_RECONNECT_CAP_MS;
        let initial = r.millis(&mut d, "reconnect_initial_ms", 1, cap);
        let most = r.millis(&mut d, "reconnect_max_ms", 1, cap);
        let status_poll = r.millis(&mut d, "status_poll_ms", 100, 60_000);
        r.finish(d);

        let mut h = doc.section("http");
        let listen = socket_addr(&mut r, &mut h, "listen");
        let failures_dir = r.path(&mut h, "failures_dir", false);
        let chart_points = r.integer(&mut h, "chart_points", 10, 100_000);
        let gallery = r.integer(&mut h, "gallery", 1, 100);
        let max_clients = r.integer(&mut h, "max_clients", 1, 1024);
        r.finish(h);

        let m = doc.section("mqtt");
        let mqtt = if m.present() {
            mqtt_section(&mut r, m)
        } else {
            None
        };

        let (errors, warnings) = r.finish_document();
        if !errors.is_empty() {
            return Err(fail(errors));
        }
        let reconnect_initial = initial.unwrap_or(defaults::BRIDGE_RECONNECT_INITIAL);
        let size = |v: Option<i64>, d: usize| v.map_or(d, |v| v as usize);
        Ok(GatewayConfig {
            path: path.into(),
            socket: socket.unwrap_or_else(|| PathBuf::from(defaults::BRIDGE_SOCKET)),
            reconnect_initial,
            reconnect_max: most
                .unwrap_or(defaults::BRIDGE_RECONNECT_MAX)
                .max(reconnect_initial),
            status_poll: status_poll.unwrap_or(defaults::GATEWAY_STATUS_POLL),
            listen: listen.unwrap_or(defaults::GATEWAY_LISTEN),
            failures_dir,
            chart_points: size(chart_points, defaults::GATEWAY_CHART_POINTS),
            gallery: size(gallery, defaults::GATEWAY_GALLERY),
            max_clients: size(max_clients, defaults::GATEWAY_MAX_CLIENTS),
            mqtt,
            warnings,
        })
    }
}

fn socket_addr(r: &mut Reader, sec: &mut Section, key: &'static str) -> Option<SocketAddr> {
    let s = r.string(sec, key)?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            let msg = format!(
                "must be an address and port such as \"127.0.0.1:9851\" or \"[::]:9851\", got {s:?}"
            );
            r.key_error(sec, key, msg);
            None
        }
    }
}

/// `[mqtt]`, when the file has it (`None` after an error: the errors are in `r`).
fn mqtt_section(r: &mut Reader, mut m: Section) -> Option<MqttConfig> {
    let broker = r.string(&mut m, "broker");
    if broker.as_deref().is_some_and(|b| {
        b.rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    }) {
        r.key_error(
            &m,
            "broker",
            "must be host:port, such as \"127.0.0.1:1883\"".into(),
        );
    }
    if !m.has("line") {
        r.key_error(
            &m,
            "line",
            "is required: this line's name in the topics".into(),
        );
    }
    let line = r.string(&mut m, "line");
    let bad_name = "must be 1 to 64 of A-Z a-z 0-9 - _";
    if line.as_deref().is_some_and(|l| !is_name(l)) {
        r.key_error(&m, "line", bad_name.into());
    }
    let prefix = r.string(&mut m, "topic_prefix");
    if prefix
        .as_deref()
        .is_some_and(|p| !p.split('/').all(is_name))
    {
        r.key_error(&m, "topic_prefix", format!("each level {bad_name}"));
    }
    let client_id = r.string(&mut m, "client_id");
    if client_id
        .as_deref()
        .is_some_and(|c| !c.is_empty() && !is_name(c))
    {
        r.key_error(&m, "client_id", bad_name.into());
    }
    let username = r.string(&mut m, "username").filter(|u| !u.is_empty());
    let password_file = r.path(&mut m, "password_file", false);
    let keep_alive = r.integer(&mut m, "keep_alive_s", 2, 3600);
    let max_inflight = r.integer(&mut m, "max_inflight", 1, 1000);
    let outbox = r.integer(&mut m, "outbox", 1, 1_000_000);
    let cap = defaults::BRIDGE_RECONNECT_CAP_MS;
    let initial = r.millis(&mut m, "reconnect_initial_ms", 1, cap);
    let most = r.millis(&mut m, "reconnect_max_ms", 1, cap);
    let state_file = r.path(&mut m, "state_file", false);
    if password_file.is_some() && username.is_none() {
        r.key_error(
            &m,
            "password_file",
            "needs [mqtt] username (MQTT 3.1.1 sends a password only with a user name)".into(),
        );
    }
    if let (Some(i), Some(o)) = (max_inflight, outbox)
        && o < i
    {
        r.key_error(&m, "outbox", format!("must be at least max_inflight ({i})"));
    }
    r.finish(m);
    let line = line.filter(|l| is_name(l))?;
    let reconnect_initial = initial.unwrap_or(defaults::MQTT_RECONNECT_INITIAL);
    Some(MqttConfig {
        broker: broker.unwrap_or_else(|| "127.0.0.1:1883".into()),
        client_id: client_id
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| format!("inspectord-{line}")),
        line,
        topic_prefix: prefix.unwrap_or_else(|| defaults::MQTT_TOPIC_PREFIX.into()),
        username,
        password_file,
        keep_alive: keep_alive.map_or(defaults::MQTT_KEEP_ALIVE, |s| Duration::from_secs(s as u64)),
        max_inflight: max_inflight.map_or(defaults::MQTT_MAX_INFLIGHT, |v| v as usize),
        outbox: outbox.map_or(defaults::MQTT_OUTBOX, |v| v as usize),
        reconnect_initial,
        reconnect_max: most
            .unwrap_or(defaults::MQTT_RECONNECT_MAX)
            .max(reconnect_initial),
        state_file: state_file.unwrap_or_else(|| PathBuf::from(defaults::MQTT_STATE_FILE)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_every_default() {
        let c = GatewayConfig::parse(Path::new("/etc/i/gateway.toml"), "").unwrap();
        assert_eq!(c.socket, Path::new("/run/inspectord/verdicts.sock"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:9851");
        assert_eq!((c.chart_points, c.gallery, c.max_clients), (600, 12, 32));
        assert_eq!(c.failures_dir, None);
        assert_eq!(c.mqtt, None, "no [mqtt]: no MQTT");
    }

    #[test]
    fn reads_every_key() {
        let text = r#"
[daemon]
socket = "v.sock"
reconnect_initial_ms = 50
reconnect_max_ms = 20
status_poll_ms = 500

[http]
listen = "[::]:8080"
failures_dir = "/var/lib/inspectord/failures"
chart_points = 100
gallery = 4
max_clients = 8

[mqtt]
broker = "broker.plant:8883"
line = "line-7"
topic_prefix = "plant/a"
client_id = ""
username = "line-7"
password_file = "pw"
keep_alive_s = 30
max_inflight = 8
outbox = 100
reconnect_initial_ms = 100
reconnect_max_ms = 10000
state_file = "state/mqtt.state"
"#;
        let c = GatewayConfig::parse(Path::new("/etc/i/gateway.toml"), text).unwrap();
        assert_eq!(c.socket, Path::new("/etc/i/v.sock"));
        assert_eq!(c.reconnect_max, Duration::from_millis(50));
        assert_eq!(c.status_poll, Duration::from_millis(500));
        assert_eq!(c.listen.port(), 8080);
        assert_eq!((c.chart_points, c.gallery, c.max_clients), (100, 4, 8));
        let m = c.mqtt.unwrap();
        assert_eq!(
            (m.broker.as_str(), m.line.as_str(), m.topic_prefix.as_str()),
            ("broker.plant:8883", "line-7", "plant/a")
        );
        assert_eq!(m.client_id, "inspectord-line-7");
        assert_eq!(m.username.as_deref(), Some("line-7"));
        assert_eq!(m.password_file.as_deref(), Some(Path::new("/etc/i/pw")));
        assert_eq!((m.max_inflight, m.outbox), (8, 100));
        assert_eq!(m.keep_alive, Duration::from_secs(30));
        assert_eq!(m.state_file, Path::new("/etc/i/state/mqtt.state"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
[daemon]
colour = 1
status_poll_ms = 5

[http]
listen = "localhost"
gallery = 0

[mqtt]
broker = "nohost"
topic_prefix = "a/#"
client_id = "a b"
password_file = "pw"
max_inflight = 10
outbox = 5

[modbus]
"#;
        let e = GatewayConfig::parse(Path::new("g.toml"), text).unwrap_err();
        let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "daemon.colour",
            "daemon.status_poll_ms",
            "http.listen",
            "http.gallery",
            "mqtt.broker",
            "mqtt.line",
            "mqtt.topic_prefix",
            "mqtt.client_id",
            "mqtt.password_file",
            "mqtt.outbox",
            "modbus",
        ] {
            assert!(keys.contains(&key), "{key} missing in {e}");
        }
    }
}
