//! The verdict socket's messages, protocol version 1: JSON Lines, one message per line, each
//! with `"type"` and `"v"`. Documented in `docs/PROTOCOL.md`.
//!
//! The wire types are separate from the internal [`Verdict`]: [`verdict_line`] is the one
//! conversion, and nothing else serialises a verdict.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::verdict::{Outcome, StatusEvent, Verdict};

pub const PROTOCOL_VERSION: u32 = 1;

/// Every message the daemon sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Sent once to each client when it connects.
    Hello(Hello),
    /// One per frame, in `seq` order.
    Verdict(WireVerdict),
    /// A change in the source's state (`camera_lost`, `camera_restored`) or of the reference
    /// set (`references_reloaded`, `reload_refused`).
    Status(WireStatus),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireStatus {
    pub v: u32,
    /// `camera_lost`, `camera_restored`, `references_reloaded` or `reload_refused`.
    pub event: String,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub v: u32,
    /// `inspectord <version>`.
    pub daemon: String,
    pub model_sha256: String,
    pub reference_set: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireVerdict {
    pub v: u32,
    pub seq: u64,
    pub source: String,
    pub frame: String,
    /// The part the frame was triggered for (trigger mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// RFC 3339, UTC, microseconds.
    pub captured_at: String,
    /// `pass`, `fail` or `error`.
    pub verdict: String,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub soart3: Option<WireSoart3>,
    pub reference_index: Option<usize>,
    pub latency_us: u64,
    pub model_sha256: String,
    pub reference_set: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WireSoart3 {
    pub beta: f64,
    pub eta: f64,
    pub gamma: f64,
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
    };
    WireVerdict {
        v: PROTOCOL_VERSION,
        seq: v.seq,
        source: v.source.to_string(),
        frame: v.frame.clone(),
        part: v.part.clone(),
        captured_at: rfc3339_micros(v.captured_at),
        verdict: v.label().to_string(),
        score,
        threshold,
        soart3,
        reference_index,
        latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        model_sha256: v.model_sha256.to_string(),
        reference_set: v.reference_set.to_string(),
        error,
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

/// The `hello` line for the model and reference set in force.
pub fn hello_line(model_sha256: &str, reference_set: &str) -> String {
    line(&Message::Hello(Hello {
        v: PROTOCOL_VERSION,
        daemon: format!("inspectord {}", env!("CARGO_PKG_VERSION")),
        model_sha256: model_sha256.to_string(),
        reference_set: reference_set.to_string(),
    }))
}

/// A status event as a JSON line.
pub fn status_line(e: &StatusEvent) -> String {
    line(&Message::Status(WireStatus {
        v: PROTOCOL_VERSION,
        event: e.kind.as_str().to_string(),
        source: e.source.to_string(),
        at: rfc3339_micros(e.at),
        after_seq: e.after_seq,
        reason: e.reason.clone(),
        reference_set: e.reference_set.as_deref().map(str::to_string),
        previous_reference_set: e.previous_reference_set.as_deref().map(str::to_string),
    }))
}

/// A verdict as a JSON line.
pub fn verdict_line(v: &Verdict, latency: Duration) -> String {
    line(&Message::Verdict(to_wire(v, latency)))
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
            part: None,
            captured_at: UNIX_EPOCH + Duration::from_micros(1_790_000_000_123_456),
            taken: Instant::now(),
            outcome,
            model_sha256: Arc::from("ab"),
            reference_set: Arc::from("cd"),
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
        assert_eq!(json["v"], 1);
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
