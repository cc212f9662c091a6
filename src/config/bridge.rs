//! The Modbus bridge's config (`inspectord bridge modbus --config modbus.toml`): compiled like
//! the daemon's, every problem with its dotted key path and line, unknown keys refused.
//!
//! ```toml
//! [daemon]
//! socket = "/run/inspectord/verdicts.sock"
//! source = "bridge-modbus"
//! reconnect_initial_ms = 200
//! reconnect_max_ms = 5000
//!
//! [modbus]
//! listen = "127.0.0.1:1502"
//! unit_id = 1
//! word_order = "high-first"
//! buffer = 8
//! plc_timeout_ms = 3000
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::{Case, Document, Reader};
use super::{ConfigErrors, ConfigWarning, defaults};

/// How a 32-bit value occupies two registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    /// The high 16 bits in the lower address (Modbus "big-endian", the default).
    HighFirst,
    /// The low 16 bits in the lower address ("word swapped").
    LowFirst,
}

/// The validated bridge config.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub path: PathBuf,
    /// The daemon's verdict socket.
    pub socket: PathBuf,
    /// `source` in `report` commands.
    pub source: String,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Where to listen when no socket is passed by socket activation.
    pub listen: SocketAddr,
    pub unit_id: u8,
    pub word_order: WordOrder,
    /// Results held with BufferResultsEnable on (the presented one included).
    pub buffer: usize,
    /// No Modbus request for this long: the PLC link is lost.
    pub plc_timeout: Duration,
    pub warnings: Vec<ConfigWarning>,
}

const NAMES: &[&str] = &["daemon", "modbus"];

impl BridgeConfig {
    /// Reads and validates a bridge config file.
    pub fn load(path: &Path) -> Result<BridgeConfig, ConfigErrors> {
        Self::parse(path, &super::read_config_file(path)?)
    }

    /// Validates bridge config text; `path` names the file and anchors a relative socket path.
    pub fn parse(path: &Path, text: &str) -> Result<BridgeConfig, ConfigErrors> {
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
        let source = r.string(&mut d, "source");
        if source.as_deref().is_some_and(|s| s.trim().is_empty()) {
            r.key_error(&d, "source", "must not be empty".into());
        }
        let max = defaults::BRIDGE_RECONNECT_CAP_MS;
        let initial = r.millis(&mut d, "reconnect_initial_ms", 1, max);
        let most = r.millis(&mut d, "reconnect_max_ms", 1, max);
        r.finish(d);

        let mut m = doc.section("modbus");
        let listen = r.string(&mut m, "listen").and_then(|s| match s.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                let msg = format!(
                    "must be an address and port such as \"0.0.0.0:502\" or \"[::]:502\", got {s:?}"
                );
                r.key_error(&m, "listen", msg);
                None
            }
        });
        let unit_id = r.integer(&mut m, "unit_id", 1, 247).map(|v| v as u8);
        let orders = [
            ("high-first", WordOrder::HighFirst),
            ("low-first", WordOrder::LowFirst),
        ];
        let word_order = r.keyword(&mut m, "word_order", &orders, Case::Exact, "");
        let buffer = r.integer(&mut m, "buffer", 1, 1024).map(|v| v as usize);
        let plc_timeout = r.millis(&mut m, "plc_timeout_ms", 100, 3_600_000);
        r.finish(m);

        let (errors, warnings) = r.finish_document();
        if !errors.is_empty() {
            return Err(fail(errors));
        }
        let reconnect_initial = initial.unwrap_or(defaults::BRIDGE_RECONNECT_INITIAL);
        Ok(BridgeConfig {
            path: path.into(),
            socket: socket.unwrap_or_else(|| PathBuf::from(defaults::BRIDGE_SOCKET)),
            source: source.unwrap_or_else(|| defaults::BRIDGE_SOURCE.into()),
            reconnect_initial,
            reconnect_max: most
                .unwrap_or(defaults::BRIDGE_RECONNECT_MAX)
                .max(reconnect_initial),
            listen: listen.unwrap_or(defaults::BRIDGE_LISTEN),
            unit_id: unit_id.unwrap_or(defaults::BRIDGE_UNIT_ID),
            word_order: word_order.unwrap_or(WordOrder::HighFirst),
            buffer: buffer.unwrap_or(defaults::BRIDGE_BUFFER),
            plc_timeout: plc_timeout.unwrap_or(defaults::BRIDGE_PLC_TIMEOUT),
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_every_default() {
        let c = BridgeConfig::parse(Path::new("/etc/i/modbus.toml"), "").unwrap();
        assert_eq!(c.socket, Path::new("/run/inspectord/verdicts.sock"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:1502");
        assert_eq!(c.unit_id, 1);
        assert_eq!(c.word_order, WordOrder::HighFirst);
        assert_eq!(c.buffer, 8);
        assert_eq!(c.plc_timeout, Duration::from_millis(3000));
        assert_eq!(c.source, "bridge-modbus");
    }

    #[test]
    fn reads_every_key() {
        let text = r#"
[daemon]
socket = "v.sock"
source = "line-3"
reconnect_initial_ms = 50
reconnect_max_ms = 20

[modbus]
listen = "[::]:502"
unit_id = 7
word_order = "low-first"
buffer = 2
plc_timeout_ms = 500
"#;
        let c = BridgeConfig::parse(Path::new("/etc/i/modbus.toml"), text).unwrap();
        assert_eq!(c.socket, Path::new("/etc/i/v.sock"));
        assert_eq!(c.source, "line-3");
        assert_eq!(
            c.reconnect_max,
            Duration::from_millis(50),
            "max is at least initial"
        );
        assert_eq!(c.listen.port(), 502);
        assert_eq!(
            (c.unit_id, c.word_order, c.buffer),
            (7, WordOrder::LowFirst, 2)
        );
        assert_eq!(c.plc_timeout, Duration::from_millis(500));
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
[daemon]
source = ""
colour = 1

[modbus]
listen = "localhost"
unit_id = 0
word_order = "big"
buffer = 0
plc_timeout_ms = "3s"

[mqtt]
"#;
        let e = BridgeConfig::parse(Path::new("m.toml"), text).unwrap_err();
        let keys: Vec<&str> = e.errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "daemon.source",
            "daemon.colour",
            "modbus.listen",
            "modbus.unit_id",
            "modbus.word_order",
            "modbus.buffer",
            "modbus.plc_timeout_ms",
            "mqtt",
        ] {
            assert!(keys.contains(&key), "{key} missing in {e}");
        }
        assert!(e.errors.iter().all(|e| e.line.is_some()), "{e}");
    }
}
