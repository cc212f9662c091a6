//! The PLC handshake (Cognex In-Sight style), as a pure state machine: the PLC's control bits in,
//! the daemon's replies and results in, the status bits, the result presented and the commands
//! to send out. No I/O and no clock: the event loop (`bridge/mod.rs`) feeds it.
//!
//! Trigger: a 0→1 edge of Trigger while TriggerEnable and TriggerReady latches PartId and asks
//! for a `trigger` command (Busy on); `trigger_ack` sets TriggerAck, echoed while Trigger stays
//! high; `trigger_missed` (or an edge while not ready) sets MissedTrigger and counts it.
//! Results: with BufferResultsEnable they queue (up to `capacity` held, the presented one
//! included; a full buffer drops the newest and sets ResultsBufferOverrun), the oldest is
//! presented with ResultsValid; ResultsAck 0→1 clears ResultsValid, ResultsAck 1→0 presents the
//! next. Without buffering the latest result is presented. ClearError 0→1 clears the
//! MissedTrigger, ResultsBufferOverrun and error latches.

use std::collections::{BTreeMap, VecDeque};

use super::registers::{
    Counters, ErrorCode, Identity, InspectionResult, ResultCode, View, coil, status,
};

/// What the handshake asks the event loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `{"type":"trigger","part_id":"<part_id>","id":<id>}` to the daemon.
    Trigger { id: u64, part_id: u32 },
}

/// A trigger edge that was not taken, and why (for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Offline,
    NotPermitted,
    TriggerDisabled,
    CameraLost,
    PlcWatchdog,
    TriggerPending,
}

/// The PLC handshake's whole state.
#[derive(Debug)]
pub struct Handshake {
    capacity: usize,
    /// Coils 0..=4 (= holding register 0).
    control: [bool; coil::COUNT as usize],
    part_id: u32,
    // Daemon link.
    online: bool,
    permitted: bool,
    camera_lost: bool,
    watchdog_expired: bool,
    // Latches.
    trigger_ack: bool,
    missed: bool,
    overrun: bool,
    error_latch: Option<ErrorCode>,
    inspection_completed: bool,
    results_valid: bool,
    heartbeat: bool,
    // Work.
    pending: Option<(u64, u32)>,
    next_id: u64,
    /// Acknowledged triggers whose verdict has not come yet: acq_id → part id.
    outstanding: BTreeMap<u64, u32>,
    queue: VecDeque<InspectionResult>,
    presented: Option<InspectionResult>,
    counters: Counters,
    last_ack_acq: u64,
    pub identity: Identity,
}

impl Handshake {
    /// `capacity`: results held with buffering on (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            control: [false; coil::COUNT as usize],
            part_id: 0,
            online: false,
            permitted: false,
            camera_lost: false,
            watchdog_expired: false,
            trigger_ack: false,
            missed: false,
            overrun: false,
            error_latch: None,
            inspection_completed: false,
            results_valid: false,
            heartbeat: false,
            pending: None,
            next_id: 1,
            outstanding: BTreeMap::new(),
            queue: VecDeque::new(),
            presented: None,
            counters: Counters::default(),
            last_ack_acq: 0,
            identity: Identity::default(),
        }
    }

    fn bit(&self, c: u16) -> bool {
        self.control[usize::from(c)]
    }

    /// Holding register 0.
    pub fn control_word(&self) -> u16 {
        self.control
            .iter()
            .enumerate()
            .fold(0, |w, (i, &b)| w | (u16::from(b) << i))
    }

    /// Coil `i` (0..5).
    pub fn coil(&self, i: u16) -> bool {
        self.control.get(usize::from(i)).copied().unwrap_or(false)
    }

    /// Why a trigger edge now would not be taken (`None`: TriggerReady).
    pub fn not_ready(&self) -> Option<NotReady> {
        if !self.online {
            Some(NotReady::Offline)
        } else if !self.permitted {
            Some(NotReady::NotPermitted)
        } else if !self.bit(coil::TRIGGER_ENABLE) {
            Some(NotReady::TriggerDisabled)
        } else if self.camera_lost {
            Some(NotReady::CameraLost)
        } else if self.watchdog_expired {
            Some(NotReady::PlcWatchdog)
        } else if self.pending.is_some() || self.trigger_ack {
            Some(NotReady::TriggerPending)
        } else {
            None
        }
    }

    pub fn error_code(&self) -> ErrorCode {
        if !self.online {
            ErrorCode::DaemonUnreachable
        } else if !self.permitted {
            ErrorCode::NotPermitted
        } else if self.camera_lost {
            ErrorCode::CameraLost
        } else if self.watchdog_expired {
            ErrorCode::PlcWatchdog
        } else {
            self.error_latch.unwrap_or(ErrorCode::None)
        }
    }

    /// The status bits (discrete inputs 0..12 = register 100).
    pub fn status_word(&self) -> u16 {
        let bits = [
            (status::ONLINE, self.online),
            (status::TRIGGER_READY, self.not_ready().is_none()),
            (status::TRIGGER_ACK, self.trigger_ack),
            (status::MISSED_TRIGGER, self.missed),
            (
                status::BUSY,
                self.pending.is_some() || !self.outstanding.is_empty(),
            ),
            (status::INSPECTION_COMPLETED, self.inspection_completed),
            (status::RESULTS_VALID, self.results_valid),
            (status::RESULTS_BUFFER_OVERRUN, self.overrun),
            (status::CAMERA_LOST, self.camera_lost),
            (status::ERROR, self.error_code() != ErrorCode::None),
            (status::HEARTBEAT, self.heartbeat),
            (status::PLC_WATCHDOG_EXPIRED, self.watchdog_expired),
        ];
        bits.iter().fold(0, |w, &(i, b)| w | (u16::from(b) << i))
    }

    pub fn view(&self) -> View<'_> {
        View {
            control: self.control_word(),
            part_id: self.part_id,
            status: self.status_word(),
            error_code: self.error_code(),
            result: self.presented.as_ref(),
            waiting: self.queue.len(),
            counters: self.counters,
            identity: &self.identity,
            last_ack_acquisition_id: self.last_ack_acq,
        }
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn presented(&self) -> Option<&InspectionResult> {
        self.presented.as_ref()
    }

    /// The PLC wrote coils `addr..addr+bits.len()` (or register 0).
    pub fn write_coils(&mut self, addr: u16, bits: &[bool]) -> Vec<Action> {
        let mut next = self.control;
        for (i, &b) in bits.iter().enumerate() {
            if let Some(slot) = next.get_mut(usize::from(addr) + i) {
                *slot = b;
            }
        }
        self.apply_control(next)
    }

    /// The PLC wrote holding register 0.
    pub fn write_control_word(&mut self, word: u16) -> Vec<Action> {
        let mut next = [false; coil::COUNT as usize];
        for (i, b) in next.iter_mut().enumerate() {
            *b = word & (1 << i) != 0;
        }
        self.apply_control(next)
    }

    /// The PLC wrote the PartId registers (high/low already joined).
    pub fn write_part_id(&mut self, part_id: u32) {
        self.part_id = part_id;
    }

    pub fn part_id(&self) -> u32 {
        self.part_id
    }

    fn apply_control(&mut self, next: [bool; coil::COUNT as usize]) -> Vec<Action> {
        let prev = self.control;
        let rose = |c: u16| !prev[usize::from(c)] && next[usize::from(c)];
        let fell = |c: u16| prev[usize::from(c)] && !next[usize::from(c)];
        let (trigger_rose, trigger_fell) = (rose(coil::TRIGGER), fell(coil::TRIGGER));
        let (ack_rose, ack_fell) = (rose(coil::RESULTS_ACK), fell(coil::RESULTS_ACK));
        let (clear_rose, buffering_fell) =
            (rose(coil::CLEAR_ERROR), fell(coil::BUFFER_RESULTS_ENABLE));
        // The enable bits count for this very write (TriggerEnable and Trigger in one write).
        self.control[usize::from(coil::TRIGGER_ENABLE)] = next[usize::from(coil::TRIGGER_ENABLE)];
        self.control[usize::from(coil::BUFFER_RESULTS_ENABLE)] =
            next[usize::from(coil::BUFFER_RESULTS_ENABLE)];
        let mut actions = Vec::new();
        if clear_rose {
            self.missed = false;
            self.overrun = false;
            self.error_latch = None;
        }
        if trigger_fell {
            self.trigger_ack = false;
        }
        if buffering_fell {
            self.queue.clear();
        }
        if trigger_rose && let Some(action) = self.trigger() {
            actions.push(action);
        }
        if ack_rose {
            self.results_valid = false;
        }
        self.control = next;
        if ack_fell {
            self.present_next();
        }
        actions
    }

    /// A Trigger edge: the command to send, or a missed trigger.
    fn trigger(&mut self) -> Option<Action> {
        if let Some(why) = self.not_ready() {
            tracing::warn!(
                ?why,
                part_id = self.part_id,
                "trigger while not ready: missed"
            );
            self.missed = true;
            self.counters.missed += 1;
            return None;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending = Some((id, self.part_id));
        Some(Action::Trigger {
            id,
            part_id: self.part_id,
        })
    }

    /// `trigger_ack {id, acq_id}`.
    pub fn on_trigger_ack(&mut self, id: Option<u64>, acq_id: u64) {
        let part = match self.pending.take() {
            Some((pid, part)) if id.is_none_or(|i| i == pid) => part,
            other => {
                self.pending = other;
                return;
            }
        };
        self.outstanding.insert(acq_id, part);
        self.counters.triggers += 1;
        self.last_ack_acq = acq_id;
        // The echo lasts while the PLC holds Trigger.
        self.trigger_ack = self.bit(coil::TRIGGER);
    }

    /// `trigger_missed` (the daemon took no image).
    pub fn on_trigger_missed(&mut self, id: Option<u64>) {
        if self.take_pending(id) {
            self.missed = true;
            self.counters.missed += 1;
        }
    }

    /// An `error` reply to a command: a trigger that was refused counts as missed.
    pub fn on_command_error(&mut self, id: Option<u64>, not_permitted: bool) {
        if not_permitted {
            self.permitted = false;
        } else {
            self.error_latch = Some(ErrorCode::CommandRefused);
        }
        if self.take_pending(id) {
            self.missed = true;
            self.counters.missed += 1;
        }
    }

    fn take_pending(&mut self, id: Option<u64>) -> bool {
        match self.pending {
            Some((pid, _)) if id.is_none_or(|i| i == pid) => {
                self.pending = None;
                true
            }
            _ => false,
        }
    }

    /// A verdict (already de-duplicated by seq).
    pub fn on_result(&mut self, mut result: InspectionResult) {
        if let Some(part) = self.outstanding.remove(&result.acquisition_id)
            && result.part_id == 0
        {
            result.part_id = part;
        }
        match result.code {
            ResultCode::Pass => self.counters.pass += 1,
            ResultCode::Fail => self.counters.fail += 1,
            ResultCode::Skipped => self.counters.skipped += 1,
            ResultCode::Error | ResultCode::None => self.counters.error += 1,
        }
        if !self.bit(coil::BUFFER_RESULTS_ENABLE) {
            self.presented = Some(result);
            self.results_valid = true;
            self.inspection_completed = !self.inspection_completed;
            return;
        }
        let held = self.queue.len() + usize::from(self.results_valid);
        if held >= self.capacity {
            tracing::warn!(
                seq = result.seq,
                acq_id = result.acquisition_id,
                capacity = self.capacity,
                "result buffer full: the newest result is dropped"
            );
            self.overrun = true;
            self.counters.overruns += 1;
            return;
        }
        self.queue.push_back(result);
        self.present_next();
    }

    /// Presents the oldest queued result when nothing is presented and ResultsAck is low.
    fn present_next(&mut self) {
        if self.results_valid || self.bit(coil::RESULTS_ACK) {
            return;
        }
        if let Some(next) = self.queue.pop_front() {
            self.presented = Some(next);
            self.results_valid = true;
            self.inspection_completed = !self.inspection_completed;
        }
    }

    /// The daemon link is up (after `hello`) with or without permission to command.
    pub fn link_up(&mut self, permitted: bool) {
        self.online = true;
        self.permitted = permitted;
    }

    /// The daemon link is down: a trigger in flight gets no reply.
    pub fn link_down(&mut self) {
        self.online = false;
        self.pending = None;
    }

    /// A new daemon run: triggers acknowledged by the old one will never have a result.
    pub fn new_run(&mut self) {
        self.outstanding.clear();
        self.camera_lost = false;
    }

    /// Verdicts that the daemon no longer retains were lost.
    pub fn results_lost(&mut self) {
        self.error_latch = Some(ErrorCode::ResultsLost);
    }

    pub fn set_camera_lost(&mut self, lost: bool) {
        self.camera_lost = lost;
    }

    pub fn set_watchdog_expired(&mut self, expired: bool) {
        self.watchdog_expired = expired;
    }

    pub fn watchdog_expired(&self) -> bool {
        self.watchdog_expired
    }

    pub fn toggle_heartbeat(&mut self) {
        self.heartbeat = !self.heartbeat;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(capacity: usize) -> Handshake {
        let mut h = Handshake::new(capacity);
        h.link_up(true);
        h.write_coils(coil::TRIGGER_ENABLE, &[true]);
        h
    }

    fn has(h: &Handshake, bit: u16) -> bool {
        h.status_word() & (1 << bit) != 0
    }

    fn result(seq: u64) -> InspectionResult {
        InspectionResult {
            seq,
            acquisition_id: seq,
            part_id: 0,
            code: ResultCode::Pass,
            score: Some(0.01),
            threshold: Some(0.02),
            latency_ms: 3,
        }
    }

    #[test]
    fn a_trigger_edge_latches_the_part_and_acks_until_trigger_drops() {
        let mut h = ready(8);
        assert!(has(&h, status::TRIGGER_READY) && has(&h, status::ONLINE));
        h.write_part_id(4711);
        let actions = h.write_coils(coil::TRIGGER, &[true]);
        assert_eq!(
            actions,
            vec![Action::Trigger {
                id: 1,
                part_id: 4711
            }]
        );
        h.write_part_id(9); // too late for this trigger
        assert!(has(&h, status::BUSY) && !has(&h, status::TRIGGER_READY));
        h.on_trigger_ack(Some(1), 42);
        assert!(has(&h, status::TRIGGER_ACK) && has(&h, status::BUSY));
        // Holding Trigger high is no new edge.
        assert!(h.write_coils(coil::TRIGGER, &[true]).is_empty());
        h.write_coils(coil::TRIGGER, &[false]);
        assert!(!has(&h, status::TRIGGER_ACK) && has(&h, status::TRIGGER_READY));
        let mut r = result(5);
        r.acquisition_id = 42;
        h.on_result(r);
        assert!(!has(&h, status::BUSY) && has(&h, status::RESULTS_VALID));
        assert!(has(&h, status::INSPECTION_COMPLETED));
        assert_eq!(h.presented().map(|r| r.part_id), Some(4711));
        assert_eq!(h.counters().triggers, 1);
        assert_eq!(h.counters().pass, 1);
    }

    #[test]
    fn an_edge_while_not_ready_is_missed_and_sends_nothing() {
        let mut h = Handshake::new(8);
        h.link_up(true);
        assert!(
            h.write_coils(coil::TRIGGER, &[true]).is_empty(),
            "TriggerEnable is off"
        );
        assert!(has(&h, status::MISSED_TRIGGER));
        assert_eq!(h.counters().missed, 1);
        h.write_coils(coil::TRIGGER, &[false]);
        h.write_coils(coil::CLEAR_ERROR, &[true]);
        assert!(!has(&h, status::MISSED_TRIGGER));
        h.write_coils(coil::CLEAR_ERROR, &[false]);
        // TriggerEnable and Trigger in one write of register 0: taken.
        assert_eq!(h.write_control_word(0b11).len(), 1);
        assert!(h.coil(coil::TRIGGER));
        h.on_trigger_missed(Some(1));
        assert!(has(&h, status::MISSED_TRIGGER));
        assert_eq!(h.counters().missed, 2);
    }

    #[test]
    fn offline_refused_and_watchdog_are_not_ready_with_their_error_codes() {
        let mut h = ready(8);
        h.link_down();
        assert!(!has(&h, status::ONLINE) && !has(&h, status::TRIGGER_READY));
        assert_eq!(h.error_code(), ErrorCode::DaemonUnreachable);
        assert!(has(&h, status::ERROR));
        h.link_up(false);
        assert_eq!(h.error_code(), ErrorCode::NotPermitted);
        h.link_up(true);
        h.set_watchdog_expired(true);
        assert_eq!(h.not_ready(), Some(NotReady::PlcWatchdog));
        assert_eq!(h.error_code(), ErrorCode::PlcWatchdog);
        h.set_watchdog_expired(false);
        assert_eq!(h.error_code(), ErrorCode::None);
        h.write_coils(coil::TRIGGER, &[true]);
        h.on_command_error(Some(1), true);
        assert_eq!(h.error_code(), ErrorCode::NotPermitted);
        assert_eq!(h.counters().missed, 1);
    }

    #[test]
    fn buffered_results_are_presented_in_order_and_a_full_buffer_drops_the_newest() {
        let mut h = ready(3);
        h.write_coils(coil::BUFFER_RESULTS_ENABLE, &[true]);
        for seq in 1..=5 {
            h.on_result(result(seq));
        }
        assert!(has(&h, status::RESULTS_BUFFER_OVERRUN));
        assert_eq!(h.counters().overruns, 2);
        assert_eq!(h.view().waiting, 2);
        let mut seen = Vec::new();
        while has(&h, status::RESULTS_VALID) {
            seen.push(h.presented().map(|r| r.seq).unwrap_or(0));
            h.write_coils(coil::RESULTS_ACK, &[true]);
            assert!(!has(&h, status::RESULTS_VALID));
            h.write_coils(coil::RESULTS_ACK, &[false]);
        }
        assert_eq!(seen, vec![1, 2, 3]);
        h.on_result(result(6));
        assert_eq!(
            h.presented().map(|r| r.seq),
            Some(6),
            "the gap 4..5 is visible"
        );
        h.write_coils(coil::CLEAR_ERROR, &[true]);
        assert!(!has(&h, status::RESULTS_BUFFER_OVERRUN));
    }

    #[test]
    fn inspection_completed_toggles_per_result_and_unbuffered_shows_the_latest() {
        let mut h = ready(8);
        h.on_result(result(1));
        let first = has(&h, status::INSPECTION_COMPLETED);
        h.on_result(result(2));
        assert_ne!(first, has(&h, status::INSPECTION_COMPLETED));
        assert_eq!(h.presented().map(|r| r.seq), Some(2));
        h.write_coils(coil::RESULTS_ACK, &[true]);
        assert!(!has(&h, status::RESULTS_VALID));
        h.write_coils(coil::RESULTS_ACK, &[false]);
        assert!(!has(&h, status::RESULTS_VALID), "nothing new to present");
    }

    #[test]
    fn register_zero_mirrors_the_coils() {
        let mut h = Handshake::new(8);
        h.write_coils(coil::BUFFER_RESULTS_ENABLE, &[true, true]);
        assert_eq!(h.control_word(), 0b1100);
        h.write_control_word(0b1);
        assert!(h.coil(coil::TRIGGER_ENABLE) && !h.coil(coil::RESULTS_ACK));
    }
}
