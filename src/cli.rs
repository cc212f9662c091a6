//! Command-line definitions only (clap). Dispatch lives in `main.rs`, the work in `commands`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "inspectord",
    version,
    about = "Edge inference daemon for visual inspection: camera → ONNX encoder → SOART3 → pass/fail verdicts on a Unix socket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info`, `inspectord=debug`); ONNX Runtime logs under `ort`.
    #[arg(
        long,
        global = true,
        env = "INSPECTORD_LOG",
        default_value = "info,ort=warn"
    )]
    pub log: String,
    /// Log format: `auto` is `journal` when stderr is the journal (under systemd), else `text`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    /// Human-readable lines on stderr.
    Text,
    /// One JSON object per line on stderr.
    Json,
    /// The systemd journal, with priorities and structured fields (`<N>`-prefixed stderr if
    /// the journal socket is unreachable).
    Journal,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: verdicts go to the configured Unix socket.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Test mode: run the same pipeline on recorded images, print verdicts as JSON Lines on
    /// stdout (and on the socket, if configured) and a summary on stderr.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        /// Replay this directory (or list file) instead of the configured source.
        #[arg(long)]
        images: Option<PathBuf>,
        /// CSV with `file` and `label` columns (and optionally `type`): prints the confusion
        /// matrix, accuracy, precision and recall.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Hold the replay until this many socket clients are connected.
        #[arg(long, default_value_t = 0)]
        wait_clients: usize,
    },
    /// Validate the config as `run` (or `replay`) would, load the model and the references,
    /// and report every problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// The mode to validate for (`run`: what the service's ExecStartPre= checks).
        #[arg(long, value_enum, default_value_t = Mode::Run)]
        mode: Mode,
    },
    /// Embed images of good parts and write a reference set with a proposed threshold.
    Enroll {
        #[arg(long, short)]
        config: PathBuf,
        /// Directory (or list file) of images of good parts.
        #[arg(long)]
        images: PathBuf,
        /// Reference file to write (safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Target false-reject rate for the proposed threshold (leave-one-out quantile).
        #[arg(long, default_value_t = 0.01, value_parser = parse_rate)]
        false_reject_rate: f64,
        /// Keep at most N references: a greedy k-center coreset of the enrolled good parts
        /// (scoring then costs N, not the number enrolled); the threshold still comes from the
        /// leave-one-out scores of every enrolled part against the N kept.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_references: Option<u64>,
    },
    /// Save frames from the configured camera as PNG (after the software region of interest).
    Record {
        #[arg(long, short)]
        config: PathBuf,
        /// Directory to write `frame-000001.png`, … into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// How many frames to save.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
    },
    /// List the cameras the UVC (V4L2) and GenICam (Aravis) back ends find, with their modes and
    /// the `device = ` value that selects each.
    Devices,
    /// Print the JSON Schema of the verdict socket's protocol: the daemon's messages or the
    /// clients' commands (the same files as docs/protocol/).
    Schema {
        #[arg(value_enum)]
        which: SchemaKind,
    },
    /// A bridge to a field bus: a separate process, an ordinary client of the verdict socket.
    Bridge {
        #[command(subcommand)]
        kind: BridgeKind,
    },
    /// The plant's view: Prometheus metrics, a live operator page and MQTT for one line; a
    /// separate process, an ordinary client of the verdict socket (docs/GATEWAY.md).
    Gateway {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BridgeKind {
    /// A Modbus/TCP server that a PLC polls like a smart camera (trigger / result handshake;
    /// register map in docs/PLC.md).
    Modbus {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// One direction of the socket protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// What the daemon sends.
    Messages,
    /// What clients send.
    Commands,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..1.0).contains(&r) => Ok(r),
        _ => Err(format!("must be a number in [0, 1), got {s:?}")),
    }
}

/// The mode a config is validated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The daemon: verdicts on the socket only.
    Run,
    /// Test mode: verdicts on stdout, a summary at the end.
    Replay,
}
