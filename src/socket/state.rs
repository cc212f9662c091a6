//! What the socket thread knows about the run, kept from the typed items the pipeline sends
//! (never by re-reading JSON): the last `seq`, the counters, the camera's state, the frame rate
//! and the reference set. It builds `hello`, `heartbeat` and `snapshot`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::stats::{Observation, RunStats};
use crate::verdict::{StatusKind, VerdictKind};
use crate::wire::{self, Counters, TriggerMode};

/// The window of the frame rate in `snapshot`.
const FPS_WINDOW_S: u64 = 10;

pub(super) struct RunState {
    pub run_id: String,
    pub started: Instant,
    pub trigger_mode: TriggerMode,
    /// `running`, `lost` or `replay`.
    pub camera: &'static str,
    pub model_sha256: Arc<str>,
    pub reference_set: Arc<str>,
    /// The last verdict `seq` emitted.
    pub seq: u64,
    pub counters: Counters,
    /// Verdicts per whole second since `started`: (second, count), the last
    /// [`FPS_WINDOW_S`] seconds.
    per_second: VecDeque<(u64, u64)>,
    pub model: Option<wire::ModelInfo>,
    /// Bridges' PLC links by reporting source, in the order first reported.
    pub plc_links: Vec<wire::PlcLink>,
    pub stats: RunStats,
}

impl RunState {
    #[cfg(test)]
    pub fn new(
        model_sha256: Arc<str>,
        reference_set: Arc<str>,
        trigger_mode: TriggerMode,
        replay: bool,
    ) -> RunState {
        RunState::with_model(model_sha256, reference_set, trigger_mode, replay, None, 0)
    }

    pub fn with_model(
        model_sha256: Arc<str>,
        reference_set: Arc<str>,
        trigger_mode: TriggerMode,
        replay: bool,
        model: Option<wire::ModelInfo>,
        queue_capacity: usize,
    ) -> RunState {
        RunState {
            run_id: run_id(),
            started: Instant::now(),
            trigger_mode,
            camera: if replay { "replay" } else { "running" },
            model_sha256,
            reference_set,
            seq: 0,
            counters: Counters::default(),
            per_second: VecDeque::new(),
            model,
            plc_links: Vec::new(),
            stats: RunStats::new(queue_capacity),
        }
    }

    /// A verdict with what it adds to the distributions.
    pub fn observed(
        &mut self,
        seq: u64,
        kind: VerdictKind,
        reference_set: &Arc<str>,
        o: Observation,
    ) {
        self.verdict(seq, kind);
        self.stats.observe(reference_set, o);
    }

    pub fn verdict(&mut self, seq: u64, kind: VerdictKind) {
        self.seq = seq;
        let c = &mut self.counters;
        c.frames += 1;
        match kind {
            VerdictKind::Pass => c.pass += 1,
            VerdictKind::Fail => c.fail += 1,
            VerdictKind::Error => c.error += 1,
            VerdictKind::Skipped => c.skipped += 1,
        }
        let second = self.started.elapsed().as_secs();
        match self.per_second.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => self.per_second.push_back((second, 1)),
        }
        while self
            .per_second
            .front()
            .is_some_and(|(s, _)| *s + FPS_WINDOW_S <= second)
        {
            self.per_second.pop_front();
        }
    }

    pub fn status(&mut self, kind: StatusKind, reference_set: Option<&Arc<str>>) {
        let c = &mut self.counters;
        match kind {
            StatusKind::CameraLost => {
                self.camera = "lost";
                c.camera_lost += 1;
            }
            StatusKind::CameraRestored => {
                self.camera = "running";
                c.camera_restored += 1;
            }
            StatusKind::ReferencesReloaded => {
                c.reloads += 1;
                if let Some(set) = reference_set {
                    self.reference_set = set.clone();
                }
            }
            StatusKind::ReloadRefused => c.reloads_refused += 1,
            StatusKind::PlcLinkLost | StatusKind::PlcLinkRestored => {}
        }
    }

    /// A bridge's report of its PLC link.
    pub fn plc_link(&mut self, source: &str, up: bool) {
        let since = wire::rfc3339_micros(SystemTime::now());
        match self.plc_links.iter_mut().find(|l| l.source == source) {
            Some(l) if l.up == up => {}
            Some(l) => {
                l.up = up;
                l.since = since;
            }
            None => self.plc_links.push(wire::PlcLink {
                source: source.to_string(),
                up,
                since,
            }),
        }
    }

    /// Verdicts per second over the last [`FPS_WINDOW_S`] seconds (or since the start).
    pub fn fps(&self) -> f64 {
        let elapsed = self.started.elapsed();
        let now = elapsed.as_secs();
        let count: u64 = self
            .per_second
            .iter()
            .filter(|(s, _)| s + FPS_WINDOW_S > now)
            .map(|(_, n)| n)
            .sum();
        let span = elapsed.as_secs_f64().min(FPS_WINDOW_S as f64);
        if span > 0.0 { count as f64 / span } else { 0.0 }
    }

    pub fn hello(&self, control: bool, retained: Option<wire::SeqRange>) -> wire::Message {
        wire::Message::Hello(wire::Hello {
            v: wire::PROTOCOL_VERSION,
            daemon: format!("inspectord {}", env!("CARGO_PKG_VERSION")),
            protocols: wire::PROTOCOLS.to_vec(),
            run_id: self.run_id.clone(),
            seq: self.seq,
            trigger_mode: self.trigger_mode,
            retained,
            model_sha256: self.model_sha256.to_string(),
            reference_set: self.reference_set.to_string(),
            control,
        })
    }

    pub fn heartbeat(&self) -> wire::Message {
        wire::Message::Heartbeat(wire::Heartbeat {
            v: wire::PROTOCOL_VERSION,
            at: wire::rfc3339_micros(SystemTime::now()),
            seq: self.seq,
            counters: self.counters,
        })
    }
}

/// 16 random hex digits (`getrandom`), falling back to the clock and the pid.
fn run_id() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: `bytes` is a valid buffer of its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let value = if n == bytes.len() as isize {
        u64::from_ne_bytes(bytes)
    } else {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    };
    format!("{value:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_camera_and_ids() {
        let mut s = RunState::new(Arc::from("m"), Arc::from("r"), TriggerMode::FreeRun, false);
        assert_eq!(s.run_id.len(), 16);
        assert!(s.run_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(s.run_id, run_id());
        for (seq, kind) in [
            (1, VerdictKind::Pass),
            (2, VerdictKind::Fail),
            (3, VerdictKind::Skipped),
        ] {
            s.verdict(seq, kind);
        }
        assert_eq!(s.seq, 3);
        assert_eq!(
            (
                s.counters.frames,
                s.counters.pass,
                s.counters.fail,
                s.counters.skipped
            ),
            (3, 1, 1, 1)
        );
        assert!(s.fps() > 0.0);
        s.status(StatusKind::CameraLost, None);
        assert_eq!(s.camera, "lost");
        s.status(StatusKind::CameraRestored, None);
        s.status(StatusKind::ReloadRefused, None);
        assert_eq!(
            (
                s.counters.camera_lost,
                s.counters.camera_restored,
                s.counters.reloads_refused
            ),
            (1, 1, 1)
        );
        s.plc_link("bridge-modbus", false);
        s.plc_link("bridge-modbus", true);
        assert_eq!(s.plc_links.len(), 1);
        assert!(s.plc_links[0].up);
        s.status(StatusKind::ReferencesReloaded, Some(&Arc::from("new")));
        assert_eq!(&*s.reference_set, "new");
    }
}
