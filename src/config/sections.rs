//! One function per section: reads its keys through the [`Reader`] (which records every problem
//! and warning) and builds the validated struct. Defaults come from [`defaults`] only.

use std::time::Duration;

use super::accounts;
use super::reader::{Case, Reader, Section};
use super::{
    Acquisition, CameraConfig, ControlConfig, FailuresConfig, GenicamConfig, GenicamPixelFormat,
    ModelConfig, OutputConfig, Overload, ReferencesConfig, ReplayConfig, RuntimeConfig,
    ScoringConfig, SourceConfig, TriggerConfig, TriggerMode, UvcConfig, UvcPixelFormat, defaults,
};
use crate::score::ScoreKind;
use crate::verdict::VerdictKind;

/// The sections a config may have.
pub(super) const NAMES: &[&str] = &[
    "source",
    "model",
    "references",
    "scoring",
    "output",
    "control",
    "runtime",
    "failures",
];

/// Keys only GenICam cameras have.
const GENICAM_ONLY: [&str; 3] = ["exposure_us", "gain", "packet_socket"];

/// Longest timeout or backoff, in milliseconds (an hour).
const MAX_MS: u64 = 3_600_000;

/// `[source]`: `kind` picks the struct; `kind = "camera"` is the deprecated alias of `"uvc"`.
pub(super) fn source(r: &mut Reader, mut s: Section) -> Option<SourceConfig> {
    let kind = r.string(&mut s, "kind");
    let source = match kind.as_deref().unwrap_or(defaults::SOURCE_KIND) {
        "replay" => replay(r, &mut s).map(SourceConfig::Replay),
        "uvc" => Some(SourceConfig::Uvc(uvc(r, &mut s, "uvc"))),
        "camera" => {
            let msg = "\"camera\" is a deprecated alias of \"uvc\" (USB / V4L2 cameras); write kind = \"uvc\"";
            r.key_warning(&s, "kind", msg.into());
            Some(SourceConfig::Uvc(uvc(r, &mut s, "camera")))
        }
        "genicam" => Some(SourceConfig::Genicam(genicam(r, &mut s))),
        other => {
            s.skip("trigger");
            s.skip("trigger_timeout_ms");
            let msg = format!(
                "unknown source kind {other:?}; expected \"replay\", \"uvc\" (UVC/V4L2) or \"genicam\" (GenICam/GigE Vision)"
            );
            r.key_error(&s, "kind", msg);
            None
        }
    };
    r.finish(s);
    source
}

fn replay(r: &mut Reader, s: &mut Section) -> Option<ReplayConfig> {
    let path = r.path(s, "path", true);
    let fps = r.float(
        s,
        "fps",
        |v| v == 0.0 || (v >= defaults::REPLAY_FPS_MIN && v.is_finite()),
        "0 (as fast as possible) or a rate of at least 1/3600 (one frame an hour)",
    );
    let looping = r.boolean(s, "loop");
    let extensions = r.string_list(s, "extensions").and_then(|v| {
        let v: Vec<String> = v
            .into_iter()
            .map(|e| e.trim_start_matches('.').to_lowercase())
            .collect();
        let problem = if v.is_empty() {
            Some("must hold at least one extension (a directory would replay nothing)")
        } else if v.iter().any(String::is_empty) {
            Some("must not hold an empty extension")
        } else {
            None
        };
        match problem {
            Some(p) => {
                r.key_error(s, "extensions", p.into());
                None
            }
            None => Some(v),
        }
    });
    let max_file_mb = r.integer(s, "max_file_mb", 1, 4096).map(|v| v as u64);
    let trigger = trigger(r, s);
    if trigger.mode == TriggerMode::Command && fps.is_some_and(|f| f > 0.0) {
        let msg = "paces triggered images too (a trigger waits for the next due time) while trigger = \"command\"; 0 takes each at once";
        r.key_warning(s, "fps", msg.into());
    }
    let default = ReplayConfig::of(path?);
    Some(ReplayConfig {
        max_file_bytes: max_file_mb.map_or(default.max_file_bytes, |mb| mb * 1024 * 1024),
        fps: fps.unwrap_or(default.fps),
        looping: looping.unwrap_or(default.looping),
        extensions: extensions.unwrap_or(default.extensions),
        trigger,
        ..default
    })
}

/// `trigger` and `trigger_timeout_ms`, which every source kind has.
fn trigger(r: &mut Reader, s: &mut Section) -> TriggerConfig {
    let modes = TriggerMode::ALL.map(|m| (m.as_str(), m));
    let mode = r.keyword(s, "trigger", &modes, Case::Exact, "");
    let timeout = r.millis(s, "trigger_timeout_ms", 1, MAX_MS);
    let mode = mode.unwrap_or(defaults::TRIGGER);
    if timeout.is_some() && mode == TriggerMode::FreeRun {
        let msg =
            "has no effect while trigger = \"free-run\" (it bounds the wait for a triggered frame)";
        r.key_warning(s, "trigger_timeout_ms", msg.into());
    }
    TriggerConfig {
        mode,
        timeout: timeout.unwrap_or(defaults::TRIGGER_TIMEOUT),
    }
}

/// The keys every camera back end has.
fn camera(r: &mut Reader, s: &mut Section) -> CameraConfig {
    let device = r.string(s, "device");
    let width = r.integer(s, "width", 1, 65535).map(|v| v as u32);
    let height = r.integer(s, "height", 1, 65535).map(|v| v as u32);
    let frame_rate = r.float(
        s,
        "frame_rate",
        |v| v > 0.0 && v <= 10_000.0,
        "a rate above 0",
    );
    let every_nth = r.integer(s, "every_nth", 1, 1_000_000).map(|v| v as u32);
    let mut ms = |key, default: Duration| r.millis(s, key, 1, MAX_MS).unwrap_or(default);
    let frame_timeout = ms("frame_timeout_ms", defaults::FRAME_TIMEOUT);
    let open_timeout = ms("open_timeout_ms", defaults::OPEN_TIMEOUT);
    let backoff_initial = ms("reconnect_initial_ms", defaults::RECONNECT_INITIAL);
    let backoff_max = ms("reconnect_max_ms", defaults::RECONNECT_MAX);
    let roi = r.roi(s, "roi");
    let trigger = trigger(r, s);
    if trigger.mode == TriggerMode::Command && every_nth.is_some_and(|n| n > 1) {
        let msg = "has no effect while trigger = \"command\": each trigger takes one frame";
        r.key_warning(s, "every_nth", msg.into());
    }
    CameraConfig {
        device,
        width,
        height,
        frame_rate,
        every_nth: every_nth.unwrap_or(defaults::EVERY_NTH),
        frame_timeout,
        open_timeout,
        backoff_initial,
        backoff_max: backoff_max.max(backoff_initial),
        roi,
        trigger,
    }
}

/// `kind = "uvc"` (or its alias `kind`): the shared keys and a UVC pixel format. The GenICam
/// sensor offsets are accepted and ignored, as they always were, with a warning; the other
/// GenICam keys are errors.
fn uvc(r: &mut Reader, s: &mut Section, kind: &str) -> UvcConfig {
    let context = format!(" for kind = {kind:?}");
    let camera = camera(r, s);
    let formats = UvcPixelFormat::ALL.map(|f| (f.as_str(), f));
    let pixel_format = r.keyword(s, "pixel_format", &formats, Case::Insensitive, &context);
    for key in ["offset_x", "offset_y"] {
        if r.integer(s, key, 0, 65535).is_some() {
            let msg = format!(
                "has no effect{context}: UVC cameras have no sensor offset (roi crops in software)"
            );
            r.key_warning(s, key, msg);
        }
    }
    for key in GENICAM_ONLY {
        if s.has(key) {
            r.key_error(
                s,
                key,
                format!("only kind = \"genicam\" has this key, not{context}"),
            );
        }
        s.skip(key);
    }
    let free_run = [(Acquisition::FreeRun.as_str(), Acquisition::FreeRun)];
    r.keyword(s, "acquisition", &free_run, Case::Exact, &context);
    UvcConfig {
        camera,
        pixel_format,
    }
}

/// `kind = "genicam"`: the shared keys and the GenICam ones.
fn genicam(r: &mut Reader, s: &mut Section) -> GenicamConfig {
    let context = " for kind = \"genicam\"";
    let camera = camera(r, s);
    let formats = GenicamPixelFormat::ALL.map(|f| (f.as_str(), f));
    let pixel_format = r.keyword(s, "pixel_format", &formats, Case::Insensitive, context);
    let offset_x = r.integer(s, "offset_x", 0, 65535).map(|v| v as u32);
    let offset_y = r.integer(s, "offset_y", 0, 65535).map(|v| v as u32);
    let exposure_us = r.float(
        s,
        "exposure_us",
        |v| v > 0.0,
        "a time in microseconds above 0",
    );
    let gain = r.float(s, "gain", |v| v >= 0.0, "a gain >= 0");
    let packet_socket = r.boolean(s, "packet_socket");
    let modes = Acquisition::ALL.map(|a| (a.as_str(), a));
    let acquisition = r.keyword(s, "acquisition", &modes, Case::Exact, "");
    if camera.trigger.mode == TriggerMode::Command
        && acquisition.unwrap_or(defaults::ACQUISITION) == Acquisition::FreeRun
    {
        let msg = "is \"command\" while the camera streams (acquisition = \"free-run\"): each trigger takes the next streamed frame, exposed before or after the trigger; set acquisition = \"software-trigger\" to expose one frame per trigger";
        r.key_warning(s, "trigger", msg.into());
    }
    GenicamConfig {
        camera,
        pixel_format,
        offset_x: offset_x.unwrap_or(defaults::OFFSET),
        offset_y: offset_y.unwrap_or(defaults::OFFSET),
        exposure_us,
        gain,
        packet_socket: packet_socket.unwrap_or(defaults::PACKET_SOCKET),
        acquisition: acquisition.unwrap_or(defaults::ACQUISITION),
    }
}

/// `[model]`.
pub(super) fn model(r: &mut Reader, mut s: Section) -> Option<ModelConfig> {
    let path = r.path(&mut s, "path", true);
    r.finish(s);
    path.map(|path| ModelConfig { path })
}

/// `[references]`.
pub(super) fn references(r: &mut Reader, mut s: Section) -> Option<ReferencesConfig> {
    let path = r.path(&mut s, "path", true);
    r.finish(s);
    path.map(|path| ReferencesConfig { path })
}

/// `[scoring]`: every key is an optional override of the reference file's settings.
pub(super) fn scoring(r: &mut Reader, mut s: Section) -> ScoringConfig {
    let kinds = [ScoreKind::Eta, ScoreKind::Gamma].map(|k| (k.as_str(), k));
    let order = |v: f64| crate::soart3::ORDER_RANGE.contains(&v);
    let scoring = ScoringConfig {
        score: r.keyword(&mut s, "score", &kinds, Case::Exact, ""),
        k: r.integer(&mut s, "k", 1, 1_000_000).map(|v| v as usize),
        eta_p: r.float(&mut s, "eta_p", order, "a Minkowski order between 1 and 64"),
        gamma_p: r.float(
            &mut s,
            "gamma_p",
            order,
            "a Minkowski order between 1 and 64",
        ),
        threshold: r.float(&mut s, "threshold", f64::is_finite, "a finite number"),
    };
    r.finish(s);
    scoring
}

/// `[output]`.
pub(super) fn output(r: &mut Reader, mut s: Section) -> OutputConfig {
    let socket = r.path(&mut s, "socket", false).filter(|p| {
        let len = p.as_os_str().len();
        let fits = len < defaults::SUN_PATH_LEN;
        if !fits {
            let msg = format!(
                "is {len} bytes long ({}); a Unix socket path may have at most {} bytes (sun_path holds {} bytes including the terminating NUL): choose a shorter path",
                p.display(),
                defaults::SUN_PATH_LEN - 1,
                defaults::SUN_PATH_LEN
            );
            r.key_error(&s, "socket", msg);
        }
        fits
    });
    let output = OutputConfig {
        socket,
        socket_mode: r
            .mode(&mut s, "socket_mode")
            .unwrap_or(defaults::SOCKET_MODE),
        client_buffer: r
            .integer(&mut s, "client_buffer", 1, 1 << 20)
            .map_or(defaults::CLIENT_BUFFER, |v| v as usize),
        max_clients: r
            .integer(&mut s, "max_clients", 1, 1024)
            .map_or(defaults::MAX_CLIENTS, |v| v as usize),
        retain: r
            .integer(&mut s, "retain", 1, defaults::RETAIN_MAX)
            .map_or(defaults::RETAIN, |v| v as usize),
        heartbeat: match r.millis(&mut s, "heartbeat_ms", 0, MAX_MS) {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
            None => Some(defaults::HEARTBEAT),
        },
    };
    r.finish(s);
    output
}

/// `[control]`: user and group names are resolved here (an unknown one is an error).
pub(super) fn control(r: &mut Reader, mut s: Section) -> ControlConfig {
    let users = r.name_or_id_list(&mut s, "users", "user", accounts::uid_of);
    let groups = r.name_or_id_list(&mut s, "groups", "group", accounts::gid_of);
    let control = ControlConfig {
        users: users.unwrap_or_default(),
        groups: groups.unwrap_or_default(),
        commands_per_second: r
            .integer(&mut s, "commands_per_second", 1, 1_000_000)
            .map_or(defaults::COMMANDS_PER_SECOND, |v| v as u32),
    };
    r.finish(s);
    control
}

/// `[runtime]`.
pub(super) fn runtime(r: &mut Reader, mut s: Section) -> RuntimeConfig {
    let onnxruntime = r.path(&mut s, "onnxruntime", false);
    let mut count = |key, max, default| {
        r.integer(&mut s, key, 1, max)
            .map_or(default, |v| v as usize)
    };
    let workers = count("workers", 256, defaults::WORKERS);
    let intra_op_threads = count("intra_op_threads", 256, defaults::INTRA_OP_THREADS);
    let queue_depth = count("queue_depth", 65536, defaults::QUEUE_DEPTH);
    let policies = Overload::ALL.map(|o| (o.as_str(), o));
    let overload = r.keyword(&mut s, "overload", &policies, Case::Exact, "");
    let runtime = RuntimeConfig {
        onnxruntime,
        workers,
        intra_op_threads,
        queue_depth,
        overload: overload.unwrap_or(defaults::OVERLOAD),
        stall_timeout: r
            .millis(&mut s, "stall_timeout_ms", 100, MAX_MS)
            .unwrap_or(defaults::STALL_TIMEOUT),
        max_image_width: r
            .integer(&mut s, "max_image_width", 1, 65535)
            .map_or(defaults::MAX_IMAGE_WIDTH, |v| v as u32),
        max_image_height: r
            .integer(&mut s, "max_image_height", 1, 65535)
            .map_or(defaults::MAX_IMAGE_HEIGHT, |v| v as u32),
    };
    r.finish(s);
    runtime
}

/// `[failures]`: off unless `dir` is set; `verdicts` may hold `fail` and `error`.
pub(super) fn failures(r: &mut Reader, mut s: Section) -> Option<FailuresConfig> {
    let dir = r.path(&mut s, "dir", false);
    let verdicts = r.string_list(&mut s, "verdicts").map(|names| {
        let allowed = [VerdictKind::Fail, VerdictKind::Error];
        let mut kinds = Vec::new();
        let mut bad = Vec::new();
        for name in names {
            match allowed.into_iter().find(|k| k.as_str() == name) {
                Some(kind) => kinds.push(kind),
                None => bad.push(name),
            }
        }
        if !bad.is_empty() {
            let msg = format!("may hold \"fail\" and \"error\", got {bad:?}");
            r.key_error(&s, "verdicts", msg);
        }
        kinds
    });
    let quota_mb = r
        .integer(&mut s, "quota_mb", 1, 1 << 30)
        .map_or(defaults::FAILURE_QUOTA_MB, |v| v as u64);
    r.finish(s);
    dir.map(|dir| FailuresConfig {
        dir,
        verdicts: verdicts.unwrap_or_else(|| defaults::FAILURE_VERDICTS.to_vec()),
        quota_bytes: quota_mb * 1024 * 1024,
    })
}
