//! The Modbus register map (documented in `docs/PLC.md`): addresses, the status bits, and the
//! encoding of the bridge's state into 16-bit registers. Pure: no I/O, no clock.
//!
//! One register image serves both register kinds: holding register N and input register N
//! hold the same value (Banner-style, for PLCs that read only one kind). Only holding registers
//! [`CONTROL`], [`PART_ID`] and [`PART_ID`]` + 1` are writable.

use crate::config::WordOrder;
use crate::wire::WireVerdictKind;

/// Coils (read/write), 0-based.
pub mod coil {
    pub const TRIGGER_ENABLE: u16 = 0;
    pub const TRIGGER: u16 = 1;
    pub const BUFFER_RESULTS_ENABLE: u16 = 2;
    pub const RESULTS_ACK: u16 = 3;
    pub const CLEAR_ERROR: u16 = 4;
    /// Number of coils.
    pub const COUNT: u16 = 5;
}

/// Discrete inputs (read-only), 0-based; the same bits make up register [`super::STATUS`].
pub mod status {
    pub const ONLINE: u16 = 0;
    pub const TRIGGER_READY: u16 = 1;
    pub const TRIGGER_ACK: u16 = 2;
    pub const MISSED_TRIGGER: u16 = 3;
    pub const BUSY: u16 = 4;
    pub const INSPECTION_COMPLETED: u16 = 5;
    pub const RESULTS_VALID: u16 = 6;
    pub const RESULTS_BUFFER_OVERRUN: u16 = 7;
    pub const CAMERA_LOST: u16 = 8;
    pub const ERROR: u16 = 9;
    pub const HEARTBEAT: u16 = 10;
    pub const PLC_WATCHDOG_EXPIRED: u16 = 11;
    /// Number of discrete inputs.
    pub const COUNT: u16 = 12;
}

/// Holding register 0: the coils as bits 0..4 (writable).
pub const CONTROL: u16 = 0;
/// Holding registers 1-2: the PartId the PLC writes (u32, writable), latched on a trigger.
pub const PART_ID: u16 = 1;
/// The first address of the read-only block.
pub const STATUS: u16 = 100;
pub const ERROR_CODE: u16 = 101;
pub const ACQUISITION_ID: u16 = 102;
pub const SEQ: u16 = 104;
pub const RESULT_PART_ID: u16 = 106;
pub const RESULT_CODE: u16 = 108;
pub const SCORE_SCALED: u16 = 109;
pub const THRESHOLD_SCALED: u16 = 111;
pub const SCORE_F32: u16 = 113;
pub const THRESHOLD_F32: u16 = 115;
pub const LATENCY_MS: u16 = 117;
pub const RESULTS_WAITING: u16 = 119;
pub const TRIGGER_COUNT: u16 = 120;
pub const PASS_COUNT: u16 = 122;
pub const FAIL_COUNT: u16 = 124;
pub const ERROR_COUNT: u16 = 126;
pub const SKIPPED_COUNT: u16 = 128;
pub const MISSED_COUNT: u16 = 130;
pub const OVERRUN_COUNT: u16 = 132;
pub const MODEL_ID: u16 = 134;
pub const REFERENCE_SET_ID: u16 = 138;
pub const RUN_ID: u16 = 142;
pub const LAST_ACK_ACQUISITION_ID: u16 = 146;
/// Registers 0..REGISTER_COUNT exist (holding and input alike); beyond is exception 02.
pub const REGISTER_COUNT: u16 = 148;

/// Scale of the integer score and threshold (`value × 1e6`, rounded, saturating).
pub const SCALE: f64 = 1e6;

/// `ResultCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ResultCode {
    None = 0,
    Pass = 1,
    Fail = 2,
    Error = 3,
    Skipped = 4,
}

impl ResultCode {
    /// From a verdict's `verdict` field.
    pub fn of(verdict: WireVerdictKind) -> ResultCode {
        match verdict {
            WireVerdictKind::Pass => ResultCode::Pass,
            WireVerdictKind::Fail => ResultCode::Fail,
            WireVerdictKind::Error => ResultCode::Error,
            WireVerdictKind::Skipped => ResultCode::Skipped,
        }
    }
}

/// `ErrorCode`: why the Error bit is on (0 when it is off). Documented in `docs/PLC.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    None = 0,
    DaemonUnreachable = 1,
    NotPermitted = 2,
    CameraLost = 3,
    PlcWatchdog = 4,
    CommandRefused = 5,
    ResultsLost = 6,
}

/// One result as the PLC sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionResult {
    pub seq: u64,
    pub acquisition_id: u64,
    pub part_id: u32,
    pub code: ResultCode,
    pub score: Option<f64>,
    pub threshold: Option<f64>,
    pub latency_ms: u32,
}

/// The bridge's counters (since it started), each shown as a u32 (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub triggers: u64,
    pub pass: u64,
    pub fail: u64,
    pub error: u64,
    pub skipped: u64,
    pub missed: u64,
    pub overruns: u64,
}

/// The daemon's identity as last seen (16 hex digits each; empty when unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub model_sha256: String,
    pub reference_set: String,
    pub run_id: String,
}

/// Everything the read-only block shows.
#[derive(Debug, Clone, PartialEq)]
pub struct View<'a> {
    pub control: u16,
    pub part_id: u32,
    pub status: u16,
    pub error_code: ErrorCode,
    pub result: Option<&'a InspectionResult>,
    pub waiting: usize,
    pub counters: Counters,
    pub identity: &'a Identity,
    pub last_ack_acquisition_id: u64,
}

/// The two registers of a 32-bit value in the configured word order.
pub fn split_u32(v: u32, order: WordOrder) -> [u16; 2] {
    let (hi, lo) = ((v >> 16) as u16, v as u16);
    match order {
        WordOrder::HighFirst => [hi, lo],
        WordOrder::LowFirst => [lo, hi],
    }
}

/// The inverse of [`split_u32`].
pub fn join_u32(words: [u16; 2], order: WordOrder) -> u32 {
    let (hi, lo) = match order {
        WordOrder::HighFirst => (words[0], words[1]),
        WordOrder::LowFirst => (words[1], words[0]),
    };
    (u32::from(hi) << 16) | u32::from(lo)
}

/// `x × 1e6` rounded, saturating at the i32 range; `None` (no score) is 0.
pub fn scaled(x: Option<f64>) -> i32 {
    match x {
        Some(x) if x.is_finite() => {
            (x * SCALE).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
        }
        Some(x) if x.is_nan() => 0,
        Some(x) if x > 0.0 => i32::MAX,
        Some(_) => i32::MIN,
        None => 0,
    }
}

/// Up to 16 hex digits as 4 raw 16-bit words, the first 4 digits in the first register
/// (independent of the word order); what is missing or not hex is 0.
pub fn hex_words(hex: &str) -> [u16; 4] {
    let mut out = [0u16; 4];
    for (i, word) in out.iter_mut().enumerate() {
        let digits = hex.get(i * 4..i * 4 + 4).unwrap_or("");
        *word = u16::from_str_radix(digits, 16).unwrap_or(0);
    }
    out
}

/// The register image, registers 0..[`REGISTER_COUNT`].
pub fn image(view: &View, order: WordOrder) -> Vec<u16> {
    let mut r = vec![0u16; usize::from(REGISTER_COUNT)];
    let put32 = |r: &mut Vec<u16>, addr: u16, v: u32| {
        let [a, b] = split_u32(v, order);
        r[usize::from(addr)] = a;
        r[usize::from(addr) + 1] = b;
    };
    r[usize::from(CONTROL)] = view.control;
    put32(&mut r, PART_ID, view.part_id);
    r[usize::from(STATUS)] = view.status;
    r[usize::from(ERROR_CODE)] = view.error_code as u16;
    if let Some(res) = view.result {
        put32(&mut r, ACQUISITION_ID, res.acquisition_id as u32);
        put32(&mut r, SEQ, res.seq as u32);
        put32(&mut r, RESULT_PART_ID, res.part_id);
        r[usize::from(RESULT_CODE)] = res.code as u16;
        put32(&mut r, SCORE_SCALED, scaled(res.score) as u32);
        put32(&mut r, THRESHOLD_SCALED, scaled(res.threshold) as u32);
        put32(
            &mut r,
            SCORE_F32,
            (res.score.unwrap_or(0.0) as f32).to_bits(),
        );
        put32(
            &mut r,
            THRESHOLD_F32,
            (res.threshold.unwrap_or(0.0) as f32).to_bits(),
        );
        put32(&mut r, LATENCY_MS, res.latency_ms);
    }
    r[usize::from(RESULTS_WAITING)] = u16::try_from(view.waiting).unwrap_or(u16::MAX);
    let c = view.counters;
    for (addr, v) in [
        (TRIGGER_COUNT, c.triggers),
        (PASS_COUNT, c.pass),
        (FAIL_COUNT, c.fail),
        (ERROR_COUNT, c.error),
        (SKIPPED_COUNT, c.skipped),
        (MISSED_COUNT, c.missed),
        (OVERRUN_COUNT, c.overruns),
    ] {
        put32(&mut r, addr, v as u32);
    }
    for (addr, hex) in [
        (MODEL_ID, &view.identity.model_sha256),
        (REFERENCE_SET_ID, &view.identity.reference_set),
        (RUN_ID, &view.identity.run_id),
    ] {
        let at = usize::from(addr);
        r[at..at + 4].copy_from_slice(&hex_words(hex));
    }
    put32(
        &mut r,
        LAST_ACK_ACQUISITION_ID,
        view.last_ack_acquisition_id as u32,
    );
    r
}

/// Whether a write of `count` holding registers at `addr` touches only writable ones.
pub fn writable(addr: u16, count: u16) -> bool {
    let end = u32::from(addr) + u32::from(count);
    count > 0 && end <= u32::from(PART_ID) + 2
}

/// Packs bits LSB-first into bytes, as Modbus read-bits responses carry them.
pub fn pack_bits(bits: impl Iterator<Item = bool>, out: &mut [u8]) {
    out.fill(0);
    for (i, bit) in bits.enumerate() {
        if bit && i / 8 < out.len() {
            out[i / 8] |= 1 << (i % 8);
        }
    }
}

/// Bit `i` of Modbus-packed bytes.
pub fn bit(data: &[u8], i: usize) -> bool {
    data.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_order_round_trips_and_puts_the_high_word_first_by_default() {
        assert_eq!(
            split_u32(0x1234_5678, WordOrder::HighFirst),
            [0x1234, 0x5678]
        );
        assert_eq!(
            split_u32(0x1234_5678, WordOrder::LowFirst),
            [0x5678, 0x1234]
        );
        for order in [WordOrder::HighFirst, WordOrder::LowFirst] {
            assert_eq!(join_u32(split_u32(0xdead_beef, order), order), 0xdead_beef);
        }
    }

    #[test]
    fn scores_scale_and_saturate() {
        assert_eq!(scaled(Some(0.0139)), 13_900);
        assert_eq!(scaled(Some(-0.5)), -500_000);
        assert_eq!(scaled(Some(1e9)), i32::MAX);
        assert_eq!(scaled(Some(f64::NEG_INFINITY)), i32::MIN);
        assert_eq!(scaled(Some(f64::NAN)), 0);
        assert_eq!(scaled(None), 0);
    }

    #[test]
    fn hex_ids_are_four_raw_words() {
        assert_eq!(
            hex_words("f0b205caf0068437"),
            [0xf0b2, 0x05ca, 0xf006, 0x8437]
        );
        assert_eq!(hex_words(""), [0; 4]);
        assert_eq!(hex_words("zz"), [0; 4]);
    }

    #[test]
    fn the_image_places_every_field() {
        let id = Identity {
            model_sha256: "0123456789abcdef".into(),
            reference_set: "f0b205caf0068437".into(),
            run_id: "5f3a9c0e12ab44d0".into(),
        };
        let res = InspectionResult {
            seq: 70_000,
            acquisition_id: 7,
            part_id: 4711,
            code: ResultCode::Fail,
            score: Some(0.0589),
            threshold: Some(0.0139),
            latency_ms: 12,
        };
        let view = View {
            control: 0b101,
            part_id: 0x0001_0002,
            status: 0b11,
            error_code: ErrorCode::CameraLost,
            result: Some(&res),
            waiting: 3,
            counters: Counters {
                triggers: 9,
                overruns: 2,
                ..Counters::default()
            },
            identity: &id,
            last_ack_acquisition_id: 8,
        };
        let r = image(&view, WordOrder::HighFirst);
        assert_eq!(r.len(), usize::from(REGISTER_COUNT));
        assert_eq!(&r[0..3], &[0b101, 1, 2]);
        assert_eq!(r[100], 0b11);
        assert_eq!(r[101], 3);
        assert_eq!(&r[102..104], &[0, 7]);
        assert_eq!(&r[104..106], &[1, 4_464]);
        assert_eq!(join_u32([r[106], r[107]], WordOrder::HighFirst), 4711);
        assert_eq!(r[108], 2);
        assert_eq!(
            join_u32([r[109], r[110]], WordOrder::HighFirst) as i32,
            58_900
        );
        let f = f32::from_bits(join_u32([r[115], r[116]], WordOrder::HighFirst));
        assert_eq!(f, 0.0139_f32);
        assert_eq!(r[119], 3);
        assert_eq!(&r[120..122], &[0, 9]);
        assert_eq!(&r[132..134], &[0, 2]);
        assert_eq!(&r[138..142], &[0xf0b2, 0x05ca, 0xf006, 0x8437]);
        assert_eq!(&r[146..148], &[0, 8]);
        let low = image(&view, WordOrder::LowFirst);
        assert_eq!(&low[102..104], &[7, 0]);
        assert_eq!(&low[138..142], &r[138..142], "ids are not 32-bit values");
    }

    #[test]
    fn only_the_control_registers_are_writable() {
        assert!(writable(0, 3));
        assert!(writable(1, 2));
        assert!(writable(2, 1));
        assert!(!writable(0, 4));
        assert!(!writable(3, 1));
        assert!(!writable(100, 1));
        assert!(!writable(0, 0));
    }

    #[test]
    fn bits_pack_lsb_first() {
        let mut out = [0u8; 2];
        pack_bits(
            [true, false, true, false, false, false, false, false, true].into_iter(),
            &mut out,
        );
        assert_eq!(out, [0b101, 1]);
        assert!(bit(&out, 8) && !bit(&out, 1) && !bit(&out, 20));
    }
}
