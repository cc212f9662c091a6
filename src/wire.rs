//! The verdict socket's messages, protocol version 2 (a superset of version 1): JSON Lines,
//! one message per line, each with `"type"`; the daemon's also carry `"v"`. Documented in
//! `docs/PROTOCOL.md`; the JSON Schema of every message, both ways, is generated from these
//! types (`inspectord schema`, committed as `docs/protocol.schema.json`).
//!
//! The wire types are separate from the internal [`Verdict`]: [`verdict_line`] is the one
//! conversion, and nothing else serialises a verdict. [`Command`] is what clients send.

use std::time::{Duration, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::verdict::{Outcome, StatusEvent, StatusKind, Verdict, VerdictKind};

/// The version the daemon's messages carry in `"v"`.
pub const PROTOCOL_VERSION: u32 = 2;
/// Every version the daemon speaks (a v1 reader ignores what v2 added).
pub const PROTOCOLS: [u32; 2] = [1, 2];
/// The longest line a client may send, newline included; a longer one closes the connection.
pub const MAX_COMMAND_LINE: usize = 64 * 1024;

/// Every message the daemon sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Sent once to each client when it connects.
    Hello(Hello),
    /// One per frame (and per acknowledged trigger), in `seq` order.
    Verdict(WireVerdict),
    /// A change in the source's state, of the reference set, or of a bridge's PLC link.
    Status(WireStatus),
    /// Every `output.heartbeat_ms` to every client (not retained).
    Heartbeat(Heartbeat),
    /// Reply to `trigger`: the trigger was taken; one verdict with this `acq_id` follows.
    TriggerAck(TriggerAck),
    /// Reply to `trigger`: no image is taken.
    TriggerMissed(TriggerMissed),
    /// Reply to `subscribe`: the cut after which the stream restarts right after `from_seq`.
    Subscribed(Subscribed),
    /// After `subscribed`, when verdicts after `from_seq` are no longer retained.
    Gap(Gap),
    /// Reply to `ack`.
    Acked(Acked),
    /// Reply to `ping`.
    Pong(Pong),
    /// Reply to `status`.
    Snapshot(Box<Snapshot>),
    /// Reply to `report`.
    Reported(Reported),
    /// A command that could not be carried out.
    Error(WireError),
}

/// Every command a client may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Take one frame for this part (trigger mode; needs control permission).
    Trigger {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        part_id: Option<String>,
    },
    /// Every retained verdict and status event after `from_seq`, then the live stream.
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<u32>,
        from_seq: u64,
    },
    /// This client has everything up to `seq`.
    Ack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<u32>,
        seq: u64,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<u32>,
    },
    /// A snapshot of the daemon's state.
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<u32>,
    },
    /// A client's event for every client (needs control permission).
    Report {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        v: Option<u32>,
        event: ReportedEvent,
        /// Who reports (e.g. `bridge-modbus`); the status event's `source`.
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Command {
    /// The client-chosen id, echoed in the reply.
    pub fn id(&self) -> Option<&ClientId> {
        match self {
            Command::Trigger { id, .. }
            | Command::Subscribe { id, .. }
            | Command::Ack { id, .. }
            | Command::Ping { id, .. }
            | Command::Status { id, .. }
            | Command::Report { id, .. } => id.as_ref(),
        }
    }
}

/// A client-chosen command id: a string or a non-negative integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ClientId {
    Number(u64),
    Text(String),
}

/// The events a client may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedEvent {
    PlcLinkLost,
    PlcLinkRestored,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WireStatus {
    pub v: u32,
    pub event: WireEvent,
    /// The frame source, or the reporting client's name (PLC link events).
    pub source: String,
    /// RFC 3339, UTC, microseconds.
    pub at: String,
    /// The `seq` of the last frame taken before the event (0 if none yet).
    pub after_seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Reload events: the reference set in force after the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_set: Option<String>,
    /// Reload events: the reference set in force before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_reference_set: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hello {
    pub v: u32,
    /// `inspectord <version>`.
    pub daemon: String,
    /// The protocol versions the daemon speaks.
    pub protocols: Vec<u32>,
    /// 16 hex digits, new at every daemon start (`seq` restarts at 1 in each run).
    pub run_id: String,
    /// The `seq` of the last verdict emitted so far (0 if none).
    pub seq: u64,
    pub trigger_mode: TriggerMode,
    /// The verdicts still retained for `subscribe`; null when none.
    pub retained: Option<SeqRange>,
    pub model_sha256: String,
    pub reference_set: String,
    /// Whether this connection may send `trigger` and `report`.
    pub control: bool,
}

/// How the source takes frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerMode {
    /// As fast as the source gives them; `trigger` is missed.
    FreeRun,
    /// One frame per `trigger` command.
    Command,
}

/// An inclusive range of verdict `seq`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeqRange {
    pub from_seq: u64,
    pub to_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WireVerdict {
    pub v: u32,
    pub seq: u64,
    pub source: String,
    pub frame: String,
    /// The acquisition id of the trigger that took the frame (trigger mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acq_id: Option<u64>,
    /// The part named by that trigger (trigger mode only, when the trigger named one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_id: Option<String>,
    /// RFC 3339, UTC, microseconds.
    pub captured_at: String,
    pub verdict: WireVerdictKind,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub soart3: Option<WireSoart3>,
    pub reference_index: Option<usize>,
    pub latency_us: u64,
    pub model_sha256: String,
    pub reference_set: String,
    /// `error` verdicts: why the frame could not be inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `skipped` verdicts: why no image was inspected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a verdict says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WireVerdictKind {
    /// `score <= threshold`.
    Pass,
    /// `score > threshold`.
    Fail,
    /// The frame could not be inspected (`error` says why); never a pass.
    Error,
    /// No image was inspected for this frame or trigger (`reason` says why).
    Skipped,
}

impl From<VerdictKind> for WireVerdictKind {
    fn from(k: VerdictKind) -> Self {
        match k {
            VerdictKind::Pass => Self::Pass,
            VerdictKind::Fail => Self::Fail,
            VerdictKind::Error => Self::Error,
            VerdictKind::Skipped => Self::Skipped,
        }
    }
}

/// What a status event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WireEvent {
    /// No frame within the frame timeout, a read error, or the camera could not be opened.
    CameraLost,
    /// The first frame after a loss.
    CameraRestored,
    /// A new reference set, threshold and scoring settings are in force after `after_seq`.
    ReferencesReloaded,
    /// The new files were refused; the set in force stays.
    ReloadRefused,
    /// A bridge reports that its PLC stopped polling.
    PlcLinkLost,
    /// A bridge reports that its PLC polls again.
    PlcLinkRestored,
}

impl From<StatusKind> for WireEvent {
    fn from(k: StatusKind) -> Self {
        match k {
            StatusKind::CameraLost => Self::CameraLost,
            StatusKind::CameraRestored => Self::CameraRestored,
            StatusKind::ReferencesReloaded => Self::ReferencesReloaded,
            StatusKind::ReloadRefused => Self::ReloadRefused,
            StatusKind::PlcLinkLost => Self::PlcLinkLost,
            StatusKind::PlcLinkRestored => Self::PlcLinkRestored,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WireSoart3 {
    pub beta: f64,
    pub eta: f64,
    pub gamma: f64,
}

/// The daemon's counters since it started (heartbeat, snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counters {
    /// Verdicts emitted (every kind).
    pub frames: u64,
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    pub skipped: u64,
    /// Trigger commands received (acknowledged or missed).
    pub triggers: u64,
    pub triggers_missed: u64,
    /// Clients connected now.
    pub clients: u64,
    /// Clients disconnected for not reading.
    pub evicted: u64,
    /// Status events since the start (absent from older daemons: 0).
    #[serde(default)]
    pub camera_lost: u64,
    #[serde(default)]
    pub camera_restored: u64,
    /// References reloaded, and reloads refused (the set in force stayed).
    #[serde(default)]
    pub reloads: u64,
    #[serde(default)]
    pub reloads_refused: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    pub v: u32,
    /// RFC 3339, UTC, microseconds.
    pub at: String,
    /// The `seq` of the last verdict emitted.
    pub seq: u64,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TriggerAck {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    pub acq_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TriggerMissed {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part_id: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Subscribed {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    pub from_seq: u64,
    /// The last verdict emitted at the cut; later ones follow live.
    pub to_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Gap {
    pub v: u32,
    /// The first verdict `seq` that is no longer retained.
    pub from_seq: u64,
    /// The last one.
    pub to_seq: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Acked {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Pong {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    /// RFC 3339, UTC, microseconds.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Snapshot {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    pub run_id: String,
    pub seq: u64,
    pub uptime_s: f64,
    pub trigger_mode: TriggerMode,
    /// `running`, `lost` (a camera), or `replay`.
    pub camera: String,
    pub model_sha256: String,
    pub reference_set: String,
    pub counters: Counters,
    /// Verdicts per second over the last 10 s.
    pub fps: f64,
    pub retained: Option<SeqRange>,
    pub clients: Vec<ClientInfo>,
    /// The model's name and version from its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// The PLC links bridges have reported (`report`), each in its last reported state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plc_links: Vec<PlcLink>,
    /// Distributions over every verdict since the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<Stats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PlcLink {
    /// The reporting client's name (`report`'s `source`).
    pub source: String,
    pub up: bool,
    /// RFC 3339, UTC, microseconds: when it was reported.
    pub since: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// Frames waiting for a worker when the last frame was queued, and the queue's capacity.
    pub queue_depth: u64,
    pub queue_capacity: u64,
    /// Frame taken → verdict emitted.
    pub latency_seconds: WireHistogram,
    /// A worker's time on a frame: decode, preprocessing, inference, scoring.
    pub inspection_seconds: WireHistogram,
    /// Scores of inspected frames per reference set and threshold (the last four), in buckets
    /// relative to the threshold.
    pub scores: Vec<ScoreHistogram>,
}

/// `counts[i]` values in `(bounds[i-1], bounds[i]]`; one more count, for values above the last
/// bound. Not cumulative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WireHistogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScoreHistogram {
    pub reference_set: String,
    pub threshold: f64,
    pub histogram: WireHistogram,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    pub client: u64,
    /// The peer's user id (SO_PEERCRED).
    pub uid: u32,
    pub control: bool,
    /// The last `seq` this client acknowledged with `ack`.
    pub acked_seq: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reported {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    pub event: ReportedEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WireError {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    pub reason: String,
}

/// Which side's messages a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// What the daemon sends ([`Message`]).
    Messages,
    /// What clients send ([`Command`]).
    Commands,
}

/// The JSON Schema (draft 2020-12) of one direction of the protocol, pretty-printed, generated
/// from the wire types (committed as `docs/protocol/*.schema.json`; a test keeps them equal).
pub fn schema(direction: Direction) -> String {
    let schema = match direction {
        Direction::Messages => schemars::schema_for!(Message),
        Direction::Commands => schemars::schema_for!(Command),
    };
    let mut text =
        serde_json::to_string_pretty(&schema).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    text.push('\n');
    text
}

/// RFC 3339 UTC with microseconds, e.g. `2026-11-28T16:02:33.123456Z`.
pub fn rfc3339_micros(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The wire form of a verdict.
pub fn to_wire(v: &Verdict, latency: Duration) -> WireVerdict {
    let (score, threshold, soart3, reference_index, error) = match &v.outcome {
        Outcome::Inspected {
            score,
            threshold,
            soart3,
            reference_index,
            ..
        } => (
            Some(*score),
            Some(*threshold),
            Some(WireSoart3 {
                beta: soart3.beta,
                eta: soart3.eta,
                gamma: soart3.gamma,
            }),
            Some(*reference_index),
            None,
        ),
        Outcome::Error { reason } => (None, None, None, None, Some(reason.clone())),
        Outcome::Skipped { .. } => (None, None, None, None, None),
    };
    let skipped = match &v.outcome {
        Outcome::Skipped { reason } => Some(reason.clone()),
        _ => None,
    };
    WireVerdict {
        v: PROTOCOL_VERSION,
        seq: v.seq,
        source: v.source.to_string(),
        frame: v.frame.clone(),
        acq_id: v.trigger.as_ref().map(|t| t.acq_id),
        part_id: v.trigger.as_ref().and_then(|t| t.part_id.clone()),
        captured_at: rfc3339_micros(v.captured_at),
        verdict: v.outcome.kind().into(),
        score,
        threshold,
        soart3,
        reference_index,
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        model_sha256: v.model_sha256.to_string(),
        reference_set: v.reference_set.to_string(),
        error,
        reason: skipped,
    }
}

/// One message as a JSON line (with the trailing newline).
pub fn line(m: &Message) -> String {
    // Serialising these plain structs cannot fail: no maps with non-string keys, no foreign types.
    let mut s = serde_json::to_string(m)
        .unwrap_or_else(|e| format!("{{\"type\":\"internal_error\",\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// A status event as a JSON line.
pub fn status_line(e: &StatusEvent) -> String {
    line(&Message::Status(WireStatus {
        v: PROTOCOL_VERSION,
        event: e.kind.into(),
        source: e.source.to_string(),
        at: rfc3339_micros(e.at),
        after_seq: e.after_seq,
        reason: e.reason.clone(),
        reference_set: e.reference_set.as_deref().map(str::to_string),
        previous_reference_set: e.previous_reference_set.as_deref().map(str::to_string),
    }))
}

/// The command types clients may send.
const COMMANDS: [&str; 6] = ["trigger", "subscribe", "ack", "ping", "status", "report"];

/// A client's line as a command; otherwise the reason for the `error` reply and the command's
/// `id` when it could be read.
pub fn parse_command(line: &[u8]) -> Result<Command, (Option<ClientId>, String)> {
    let typed_error = match serde_json::from_slice::<Command>(line) {
        Ok(c) => return Ok(c),
        Err(e) => e,
    };
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Err((None, format!("malformed JSON: {e}"))),
    };
    let Some(object) = value.as_object() else {
        return Err((None, "a command must be a JSON object".into()));
    };
    let id = object
        .get("id")
        .and_then(|v| serde_json::from_value::<ClientId>(v.clone()).ok());
    let reason = match object.get("type") {
        None => "missing \"type\"".to_string(),
        Some(serde_json::Value::String(t)) if !COMMANDS.contains(&t.as_str()) => {
            format!("unknown type {t:?}; commands: {}", COMMANDS.join(", "))
        }
        Some(serde_json::Value::String(t)) => format!("invalid {t}: {typed_error}"),
        Some(_) => "\"type\" must be a string".to_string(),
    };
    Err((id, reason))
}

/// A verdict as a JSON line.
pub fn verdict_line(v: &Verdict, latency: Duration) -> String {
    line(&Message::Verdict(to_wire(v, latency)))
}

/// The gateway's operator page API (`/api/state`, `/events`): what the page and scripts read.
/// Served by `inspectord gateway`, not by the daemon. Documented in `docs/GATEWAY.md`.
pub mod page {
    use serde::Serialize;

    use super::Counters;

    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct State {
        pub daemon: Daemon,
        /// `running`, `lost`, `replay`, or `unknown` (no snapshot yet).
        pub camera: String,
        pub plc_links: Vec<super::PlcLink>,
        pub model: Option<Model>,
        pub reference_set: Option<String>,
        /// The threshold of the last inspected frame.
        pub threshold: Option<f64>,
        /// The daemon's, since it started (the last known while it is unreachable).
        pub counters: Counters,
        pub fps: f64,
        pub uptime_s: f64,
        pub seq: u64,
        /// The score histogram of the set in force (non-cumulative counts, one more than bounds).
        pub score_histogram: Option<Histogram>,
        pub mqtt: Option<Mqtt>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Daemon {
        pub up: bool,
        /// When it came up or went away (RFC 3339, UTC).
        pub since: String,
        pub version: Option<String>,
        pub run_id: Option<String>,
        pub trigger_mode: Option<super::TriggerMode>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Model {
        pub name: Option<String>,
        pub version: Option<String>,
        pub sha256: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Histogram {
        pub bounds: Vec<f64>,
        pub counts: Vec<u64>,
    }

    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Mqtt {
        pub connected: bool,
        pub acked_seq: u64,
        pub outbox: usize,
    }

    /// One verdict in the score chart.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Point {
        pub seq: u64,
        /// `captured_at`.
        pub t: String,
        pub verdict: super::WireVerdictKind,
        pub score: Option<f64>,
        pub threshold: Option<f64>,
    }

    /// One failed frame's image in the gallery.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct GalleryItem {
        pub name: String,
        pub url: String,
        pub seq: u64,
        /// `fail` or `error`.
        pub verdict: String,
        /// Known when the gateway saw the verdict.
        pub score: Option<f64>,
        /// When the image was saved (from its name).
        pub at: String,
    }

    /// The first event of a page's stream: everything it draws.
    #[derive(Debug, Clone, PartialEq, Serialize)]
    pub struct Hello<'a> {
        pub state: &'a State,
        pub chart: Vec<&'a Point>,
        pub gallery: &'a [GalleryItem],
    }

    /// JSON text of a page type (they are plain data: serialising cannot fail).
    pub fn json<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Decision;
    use crate::soart3::Soart3;
    use std::sync::Arc;
    use std::time::{Instant, UNIX_EPOCH};

    fn verdict(outcome: Outcome) -> Verdict {
        Verdict {
            seq: 7,
            source: Arc::from("replay"),
            frame: "cell0001.png".into(),
            trigger: None,
            captured_at: UNIX_EPOCH + Duration::from_micros(1_790_000_000_123_456),
            taken: Instant::now(),
            outcome,
            model_sha256: Arc::from("ab"),
            reference_set: Arc::from("cd"),
            inspection: None,
            queued: 0,
        }
    }

    #[test]
    fn inspected_verdict_round_trips() {
        let v = verdict(Outcome::Inspected {
            decision: Decision::Fail,
            score: 0.75,
            threshold: 0.5,
            soart3: Soart3 {
                beta: 1.5,
                eta: 0.75,
                gamma: 0.25,
            },
            reference_index: 3,
        });
        let text = verdict_line(&v, Duration::from_micros(1234));
        assert!(text.ends_with('\n'));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], "verdict");
        assert_eq!(json["v"], 2);
        assert_eq!(json["verdict"], "fail");
        assert_eq!(json["captured_at"], "2026-09-21T14:13:20.123456Z");
        assert_eq!(json["soart3"]["eta"], 0.75);
        assert_eq!(json["latency_us"], 1234);
        assert!(json.get("error").is_none());
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back,
            Message::Verdict(to_wire(&v, Duration::from_micros(1234)))
        );
    }

    #[test]
    fn commands_parse_and_errors_say_why_with_the_id() {
        assert_eq!(
            parse_command(br#"{"type":"ping","id":7,"v":2}"#),
            Ok(Command::Ping {
                id: Some(ClientId::Number(7)),
                v: Some(2)
            })
        );
        let err = |line: &[u8]| parse_command(line).unwrap_err();
        assert!(err(b"{not json").1.starts_with("malformed JSON"));
        assert_eq!(err(b"[1]").1, "a command must be a JSON object");
        let (id, reason) = err(br#"{"type":"fly","id":"a"}"#);
        assert_eq!(id, Some(ClientId::Text("a".into())));
        assert!(reason.starts_with("unknown type \"fly\""), "{reason}");
        let (id, reason) = err(br#"{"type":"ack","seq":"x","id":3}"#);
        assert_eq!(id, Some(ClientId::Number(3)));
        assert!(reason.starts_with("invalid ack: "), "{reason}");
        assert_eq!(err(br#"{"id":-1}"#), (None, "missing \"type\"".into()));
    }

    #[test]
    fn error_verdict_carries_the_reason_and_nulls() {
        let v = verdict(Outcome::Error {
            reason: "cannot decode image".into(),
        });
        let json: serde_json::Value =
            serde_json::from_str(&verdict_line(&v, Duration::ZERO)).unwrap();
        assert_eq!(json["verdict"], "error");
        assert_eq!(json["error"], "cannot decode image");
        assert!(
            json["score"].is_null()
                && json["soart3"].is_null()
                && json["reference_index"].is_null()
        );
    }
}
