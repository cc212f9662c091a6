//! One function per mode of the command line; errors are `anyhow` with context.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use crossbeam_channel::Sender;

use crate::cli::Mode;
use crate::config::{
    Config, ReplayConfig, SourceConfig, TriggerMode, default_extensions, defaults,
};
use crate::coreset;
use crate::encoder::Model;
use crate::failures::FailureLog;
use crate::inspect::{Inspector, Scorer};
use crate::onnxruntime::{self, Runtime};
use crate::pipeline::{self, Input, Pipeline, Signals, Tally, Triggering, WaitClients};
use crate::preprocess::{ImageLimits, Preprocessor};
use crate::references::{CoresetMeta, ReferenceMeta, ReferenceSet};
use crate::report::Labels;
use crate::score::{self, Embeddings, Scoring};
use crate::service::{self, Notifier};
use crate::sink::Sink;
use crate::sink::failures::FailureImageSink;
use crate::sink::socket::SocketSink;
use crate::sink::stdout::StdoutSink;
use crate::sink::summary::SummarySink;
use crate::soart3::Orders;
use crate::socket::{self, SocketServer, SocketSettings};
use crate::source::Payload;
use crate::source::replay::{self, ReplaySource};
use crate::stop::StopSignal;
use crate::wire;

/// The config with its model loaded.
struct Loaded {
    config: Config,
    runtime: &'static Runtime,
    model: Model,
}

/// Reads and validates the config; logs its warnings.
fn load_config(config_path: &Path) -> Result<Config> {
    let config = Config::load(config_path)?;
    for w in &config.warnings {
        tracing::warn!(key = %w.key, line = w.line, "config: {}", w.message);
    }
    Ok(config)
}

fn load_model(config_path: &Path) -> Result<Loaded> {
    let config = load_config(config_path)?;
    let runtime = onnxruntime::init(config.runtime.onnxruntime.as_deref())?;
    let model = Model::load(runtime, &config.model.path)?;
    tracing::info!(
        path = %model.path.display(),
        sha256 = %model.sha256,
        name = %model.contract.name,
        version = %model.contract.version,
        input = ?(model.contract.channels, model.contract.height, model.contract.width),
        embedding_dim = model.contract.embedding_dim,
        "model loaded"
    );
    Ok(Loaded {
        config,
        runtime,
        model,
    })
}

fn load_scorer(l: &Loaded) -> Result<Scorer> {
    let set = ReferenceSet::load(
        &l.config.references.path,
        &l.model.sha256,
        &l.model.path,
        l.model.contract.embedding_dim,
    )?;
    let scorer = Scorer::new(set, &l.config.scoring)?;
    log_scorer(&scorer, "references loaded");
    Ok(scorer)
}

fn log_scorer(scorer: &Scorer, message: &'static str) {
    tracing::info!(
        path = %scorer.set.path.display(),
        id = %scorer.id,
        count = scorer.set.embeddings.len(),
        score = scorer.scoring.kind.as_str(),
        k = scorer.scoring.k,
        eta_p = scorer.scoring.orders.eta_p,
        gamma_p = scorer.scoring.orders.gamma_p,
        threshold = scorer.scoring.threshold,
        "{message}"
    );
}

fn inspectors(l: &Loaded, n: usize) -> Result<Vec<Inspector>> {
    (0..n)
        .map(|_| {
            let encoder = l
                .model
                .encoder(l.runtime, l.config.runtime.intra_op_threads)?;
            let limits = ImageLimits {
                max_width: l.config.runtime.max_image_width,
                max_height: l.config.runtime.max_image_height,
            };
            let pre = Preprocessor::new(l.model.contract.clone()).with_limits(limits);
            Ok(Inspector::new(pre, encoder))
        })
        .collect()
}

fn source(config: &SourceConfig) -> Result<Input> {
    match (config, crate::source::camera_backend(config)) {
        (SourceConfig::Replay(r), _) => Ok(Input::Frames(Box::new(ReplaySource::new(r)?))),
        (_, Some((backend, supervision))) => Ok(Input::Camera {
            backend,
            supervision,
        }),
        (_, None) => bail!("no camera back end for {config:?}"),
    }
}

/// The verdict socket: the one passed by socket activation, else `output.socket` bound here.
/// `control` is where its clients' triggers go.
fn socket(
    l: &Loaded,
    scorer: &Scorer,
    triggering: Triggering,
    control: Sender<pipeline::Control>,
) -> Result<Option<(SocketServer, socket::Broadcaster)>> {
    let output = &l.config.output;
    let settings = SocketSettings {
        client_buffer: output.client_buffer,
        max_clients: output.max_clients,
        retain: output.retain,
        heartbeat: output.heartbeat,
        commands_per_second: l.config.control.commands_per_second,
        policy: socket::ControlPolicy::new(
            l.config.control.users.clone(),
            l.config.control.groups.clone(),
        ),
    };
    let hello = socket::RunInfo {
        model_sha256: Arc::from(l.model.sha256.as_str()),
        reference_set: scorer.id.clone(),
        trigger_mode: match triggering {
            Triggering::FreeRun => wire::TriggerMode::FreeRun,
            Triggering::Control => wire::TriggerMode::Command,
        },
        replay: matches!(l.config.source, SourceConfig::Replay(_)),
        control: Some(control),
        model: Some(wire::ModelInfo {
            name: l.model.contract.name.clone(),
            version: l.model.contract.version.clone(),
        }),
        queue_capacity: l.config.runtime.queue_depth,
    };
    // Socket activation: the service manager owns the socket file; clients may already be
    // waiting in its backlog.
    if let Some(listener) = service::activated_listener()? {
        let passed = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf));
        if let (Some(configured), Some(passed)) = (&l.config.output.socket, &passed)
            && configured != passed
        {
            tracing::warn!(configured = %configured.display(), passed = %passed.display(), "serving the socket passed by the service manager, not output.socket");
        }
        let server = SocketServer::new(listener, None, hello, settings)?;
        tracing::info!(path = ?passed, "verdict socket passed by the service manager (socket activation)");
        return Ok(Some(server));
    }
    let Some(path) = &l.config.output.socket else {
        return Ok(None);
    };
    let listener = socket::bind(path, l.config.output.socket_mode)?;
    let server = SocketServer::new(listener, Some(path.clone()), hello, settings)?;
    tracing::info!(path = %path.display(), mode = format!("{:o}", l.config.output.socket_mode), "verdict socket listening");
    Ok(Some(server))
}

/// What SIGHUP reloads: the config's `[references]` and `[scoring]`, checked against the model
/// already loaded. The ONNX Runtime sessions are not touched. Validation is complete and the
/// same as at start-up (the config, the reference loader, building the `Scorer`) before
/// anything is announced: an error here is a `reload_refused` and the set in force stays.
/// Changes to other sections are logged as needing a restart.
fn reloader(l: &Loaded) -> pipeline::Reload {
    let (config_path, running) = (l.config.path.clone(), l.config.clone());
    let (sha, model_path, dim) = (
        l.model.sha256.clone(),
        l.model.path.clone(),
        l.model.contract.embedding_dim,
    );
    Box::new(move || {
        let config = Config::load(&config_path)?;
        let set = ReferenceSet::load(&config.references.path, &sha, &model_path, dim)?;
        let needs_restart: Vec<&str> = [
            ("source", config.source != running.source),
            ("model", config.model != running.model),
            ("output", config.output != running.output),
            ("control", config.control != running.control),
            ("runtime", config.runtime != running.runtime),
            ("failures", config.failures != running.failures),
        ]
        .into_iter()
        .filter_map(|(section, changed)| changed.then_some(section))
        .collect();
        if !needs_restart.is_empty() {
            tracing::warn!(
                sections = ?needs_restart,
                "these changed sections take effect on restart only; reloading references and scoring"
            );
        }
        let scorer = Scorer::new(set, &config.scoring)?;
        log_scorer(&scorer, "references reloaded");
        Ok(scorer)
    })
}

/// What `run`, `replay` and `check` validate and build before any thread starts or any socket
/// is bound: `check` runs exactly this, so a config `check` accepts is one `run` accepts.
struct Prepared {
    loaded: Loaded,
    scorer: Scorer,
    input: Input,
    failures: Option<FailureImageSink>,
}

fn prepare(config_path: &Path, mode: Mode, images: Option<PathBuf>) -> Result<Prepared> {
    let mut loaded = load_model(config_path)?;
    if let Some(images) = images {
        loaded.config.source = match &loaded.config.source {
            SourceConfig::Replay(r) => SourceConfig::Replay(ReplayConfig {
                path: images,
                ..r.clone()
            }),
            camera @ (SourceConfig::Uvc(_) | SourceConfig::Genicam(_)) => {
                SourceConfig::Replay(ReplayConfig {
                    trigger: *camera.trigger(),
                    ..ReplayConfig::of(images)
                })
            }
        };
    }
    if mode == Mode::Run && loaded.config.output.socket.is_none() && !service::socket_passed() {
        bail!(
            "`run` sends verdicts to the socket only: set output.socket in {}",
            config_path.display()
        );
    }
    let scorer = load_scorer(&loaded)?;
    let input = source(&loaded.config.source)?;
    let failures = match &loaded.config.failures {
        Some(f) => Some(FailureImageSink::new(
            FailureLog::open(&f.dir, f.quota_bytes)?,
            f.verdicts.clone(),
        )),
        None => None,
    };
    Ok(Prepared {
        loaded,
        scorer,
        input,
        failures,
    })
}

/// Options of `replay`.
pub struct ReplayOptions {
    pub images: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    pub wait_clients: usize,
}

/// `run`: the daemon. Verdicts go to the socket only.
pub fn run(config_path: &Path) -> Result<Tally> {
    let p = prepare(config_path, Mode::Run, None)?;
    start(p, Vec::new(), 0)
}

/// `replay`: test mode. Verdicts on stdout (and the socket, when configured), the summary on
/// stderr at the end.
pub fn replay(config_path: &Path, opts: ReplayOptions) -> Result<Tally> {
    let p = prepare(config_path, Mode::Replay, opts.images)?;
    let labels = opts.labels.as_deref().map(Labels::load).transpose()?;
    let sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(StdoutSink::new()),
        Box::new(SummarySink::new(labels)),
    ];
    start(p, sinks, opts.wait_clients)
}

/// Builds the rest of the run (socket, workers, sinks) and runs the pipeline to its end.
fn start(p: Prepared, mut sinks: Vec<Box<dyn Sink>>, wait_clients: usize) -> Result<Tally> {
    let started = Instant::now();
    let Prepared {
        loaded: l,
        scorer,
        input,
        failures,
    } = p;
    let model_sha256: Arc<str> = Arc::from(l.model.sha256.as_str());
    // Before the socket is bound: a stop signal from now on drains and removes the socket file.
    let signals = pipeline::SignalHandlers::install(Some(reloader(&l)))?;
    // No trigger source in the config yet: free-run; the socket answers triggers as missed.
    let trigger = *l.config.source.trigger();
    let triggering = match trigger.mode {
        TriggerMode::FreeRun => Triggering::FreeRun,
        TriggerMode::Command => Triggering::Control,
    };
    let (control_tx, control) = pipeline::control_channel();
    let socket = socket(&l, &scorer, triggering, control_tx)?;
    let wait_clients = match (&socket, wait_clients) {
        (_, 0) => None,
        (Some((_, b)), count) => Some(WaitClients {
            count,
            connected: b.connected_counter(),
        }),
        (None, _) => bail!(
            "--wait-clients needs a verdict socket: set output.socket in {}",
            l.config.path.display()
        ),
    };
    let server = socket.map(|(server, broadcaster)| {
        sinks.push(Box::new(SocketSink::new(broadcaster)));
        server
    });
    sinks.extend(failures.map(|f| Box::new(f) as Box<dyn Sink>));
    let inspectors = inspectors(&l, l.config.runtime.workers)?;
    tracing::info!(
        workers = l.config.runtime.workers,
        intra_op_threads = l.config.runtime.intra_op_threads,
        sinks = ?sinks.iter().map(|s| s.name()).collect::<Vec<_>>(),
        startup_ms = started.elapsed().as_millis() as u64,
        "ready"
    );
    let tally = pipeline::run(Pipeline {
        source: input,
        triggering,
        trigger_timeout: trigger.timeout,
        overload: l.config.runtime.overload,
        control,
        inspectors,
        scorer: pipeline::shared_scorer(scorer),
        model_sha256,
        queue_depth: l.config.runtime.queue_depth,
        sinks,
        socket: server,
        wait_clients,
        stop: StopSignal::new(),
        signals: Signals::Handle(signals),
        notifier: Notifier::from_env(),
        stall_timeout: l.config.runtime.stall_timeout,
    })?;
    tracing::info!(
        frames = tally.frames,
        pass = tally.pass,
        fail = tally.fail,
        error = tally.error,
        skipped = tally.skipped,
        "stopped"
    );
    Ok(tally)
}

/// `check`: exactly the validation `run` (or `replay`, with `mode`) does before it starts:
/// the config, the model, the references, the source, the failure-image directory and the
/// mode's own requirements.
pub fn check(config_path: &Path, mode: Mode) -> Result<String> {
    let Prepared {
        loaded: l, scorer, ..
    } = prepare(config_path, mode, None)?;
    let c = &l.model.contract;
    let s = &scorer.scoring;
    let mut report = format!(
        "{}: ok\n  onnxruntime: {} ({})\n  model: {} ({} {}, sha256 {})\n    input {}x{}x{} ({} resize), embedding {}\n  references: {} (id {}, {} embeddings, made by {})\n  scoring: {} k={} eta_p={} gamma_p={} threshold={}",
        config_path.display(),
        l.runtime.path.display(),
        l.runtime.origin,
        l.model.path.display(),
        c.name,
        c.version,
        l.model.sha256,
        c.channels,
        c.height,
        c.width,
        c.resize.name(),
        c.embedding_dim,
        scorer.set.path.display(),
        scorer.id,
        scorer.set.embeddings.len(),
        scorer.set.meta.created_by,
        s.kind.as_str(),
        s.k,
        s.orders.eta_p,
        s.orders.gamma_p,
        s.threshold,
    );
    let (output, control) = (&l.config.output, &l.config.control);
    let policy = socket::ControlPolicy::new(control.users.clone(), control.groups.clone());
    report += &format!(
        "\n  socket protocol: retain {} lines, heartbeat {}, control for {policy}, {} commands/s per client",
        output.retain,
        output
            .heartbeat
            .map_or("off".to_string(), |d| format!("every {} ms", d.as_millis())),
        control.commands_per_second,
    );
    let trigger = l.config.source.trigger();
    report += &format!(
        "\n  source: trigger={} trigger_timeout_ms={} overload={} queue_depth={}",
        trigger.mode.as_str(),
        trigger.timeout.as_millis(),
        l.config.runtime.overload.as_str(),
        l.config.runtime.queue_depth,
    );
    for w in &l.config.warnings {
        report += &format!("\n  warning: {w}");
    }
    // A missing camera is a warning, not an error: `run` starts anyway and keeps retrying.
    if let Some((backend, _)) = crate::source::camera_backend(&l.config.source) {
        match backend.open() {
            Ok(device) => report += &format!("\n  camera: ok ({})", device.granted()),
            Err(e) => {
                report += &format!(
                    "\n  warning: camera not available: {}\n    `run` starts anyway, reports camera_lost on the socket and keeps retrying",
                    crate::error::chain(&e)
                )
            }
        }
    }
    Ok(report)
}

/// Options of `enroll`.
pub struct EnrollOptions {
    /// A directory or list file of images of good parts.
    pub images: PathBuf,
    pub out: PathBuf,
    pub false_reject_rate: f64,
    /// Keep at most this many references, chosen by greedy k-center (`coreset.rs`).
    pub max_references: Option<usize>,
}

/// Embeds every image in `images` (all or nothing: one that cannot be embedded fails the lot,
/// naming each).
fn embed_good_images(l: &Loaded, images: &Path) -> Result<Embeddings> {
    let (extensions, max_file_bytes) = match &l.config.source {
        SourceConfig::Replay(r) => (r.extensions.clone(), r.max_file_bytes),
        SourceConfig::Uvc(_) | SourceConfig::Genicam(_) => (
            default_extensions(),
            defaults::REPLAY_MAX_FILE_MB * 1024 * 1024,
        ),
    };
    let files = replay::list_images(images, &extensions)?;
    if files.len() < 2 {
        bail!(
            "{} holds {} image(s); enrolling needs at least 2 good images",
            images.display(),
            files.len()
        );
    }
    let mut inspector = inspectors(l, 1)?.remove(0);
    let mut data = Vec::with_capacity(files.len() * l.model.contract.embedding_dim);
    let mut problems = Vec::new();
    for f in &files {
        let embedded = replay::read_frame(f, max_file_bytes)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(inspector.embed(&Payload::Encoded(bytes))?));
        match embedded {
            Ok(e) => data.extend_from_slice(&e),
            Err(e) => problems.push(format!("  {}: {e:#}", f.display())),
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} of {} images could not be embedded; nothing written:\n{}",
            problems.len(),
            files.len(),
            problems.join("\n")
        );
    }
    Ok(Embeddings {
        dim: l.model.contract.embedding_dim,
        data,
    })
}

/// `enroll`: embeds good images and writes a reference set with a leave-one-out threshold.
/// With `max_references`, the set keeps a k-center coreset of the enrolled embeddings and the
/// threshold comes from the leave-one-out scores of all of them against it.
pub fn enroll(config_path: &Path, opts: &EnrollOptions) -> Result<String> {
    let l = load_model(config_path)?;
    let all = embed_good_images(&l, &opts.images)?;
    let sc = &l.config.scoring;
    let mut scoring = Scoring {
        kind: sc.score.unwrap_or(defaults::SCORE),
        k: sc.k.unwrap_or(defaults::K),
        orders: Orders {
            eta_p: sc.eta_p.unwrap_or(defaults::ORDERS.eta_p),
            gamma_p: sc.gamma_p.unwrap_or(defaults::ORDERS.gamma_p),
        },
        threshold: 0.0,
    };
    let keep = opts.max_references.unwrap_or(usize::MAX).min(all.len());
    // The loader refuses a set whose k exceeds its size: refuse it before writing it.
    if scoring.k > keep {
        bail!(
            "scoring.k = {} needs at least {} references; {} {}, nothing written",
            scoring.k,
            scoring.k,
            keep,
            if keep < all.len() {
                "allowed by --max-references"
            } else {
                "good images given"
            }
        );
    }
    let selection = coreset::k_center(&all, keep, scoring.kind, scoring.orders);
    let loo = coreset::leave_one_out_against(&all, &selection.rows, &scoring);
    scoring.threshold = score::threshold_for_false_reject_rate(&loo, opts.false_reject_rate)
        .context("no leave-one-out scores to set a threshold from")?;
    let references = coreset::subset(&all, &selection.rows);
    let selected = keep < all.len();
    let meta = ReferenceMeta {
        model_sha256: l.model.sha256.clone(),
        threshold: scoring.threshold,
        kind: scoring.kind,
        k: scoring.k,
        orders: scoring.orders,
        threshold_method: format!(
            "leave-one-out {} quantile for a false-reject rate of {} over {} good images{}",
            scoring.kind.as_str(),
            opts.false_reject_rate,
            all.len(),
            if selected {
                format!(
                    " against the {keep} selected by k-center (each selected one without its own row)"
                )
            } else {
                String::new()
            }
        ),
        created_by: format!("inspectord enroll {}", env!("CARGO_PKG_VERSION")),
        created_at: wire::rfc3339_micros(SystemTime::now()),
        source: opts.images.display().to_string(),
        coreset: Some(CoresetMeta {
            enrolled_count: all.len(),
            method: if selected { coreset::METHOD } else { "none" }.to_string(),
        }),
    };
    let bytes = ReferenceSet::write(&opts.out, &references, &meta)?;
    let set = ReferenceSet::parse(&opts.out, &bytes)?;
    let chosen = if selected {
        format!(
            " selected by k-center from {} good images (covering radius {})",
            all.len(),
            selection.radius
        )
    } else {
        String::new()
    };
    Ok(format!(
        "wrote {}: {} references{chosen}, id {}, proposed threshold {} ({} k={}, leave-one-out, target false-reject rate {})",
        opts.out.display(),
        references.len(),
        set.id,
        scoring.threshold,
        scoring.kind.as_str(),
        scoring.k,
        opts.false_reject_rate
    ))
}

/// `record`: saves `count` frames from the configured camera as `frame-000001.png`, … in `out`,
/// after the software region of interest. A GenICam read is bounded by the frame timeout (the
/// first frame may also take the open timeout); a UVC read waits in the driver, and may hang if
/// the camera stalls.
pub fn record(config_path: &Path, out: &Path, count: usize) -> Result<String> {
    let config = load_config(config_path)?;
    let Some((backend, camera)) = crate::source::camera_backend(&config.source) else {
        bail!(
            "`record` needs a camera source ([source] kind = \"uvc\" or \"genicam\") in {}",
            config_path.display()
        );
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut device = backend
        .open()
        .with_context(|| format!("cannot open the {} camera", backend.name()))?;
    tracing::info!(granted = device.granted(), "camera opened");
    let first_deadline = Instant::now() + camera.open_timeout + camera.frame_timeout;
    let mut saved = Vec::with_capacity(count);
    while saved.len() < count {
        let frame = match device.read() {
            Ok(frame) => frame,
            Err(crate::source::camera::CaptureError::Timeout(_))
                if saved.is_empty() && Instant::now() < first_deadline =>
            {
                continue;
            }
            Err(e) => {
                let done = saved.len();
                return Err(
                    anyhow::Error::new(e).context(format!("after {done} of {count} frames"))
                );
            }
        };
        let image = match &camera.roi {
            Some(roi) => crate::source::camera::crop_roi(frame.image, roi)?,
            None => frame.image,
        };
        let path = out.join(format!("frame-{:06}.png", saved.len() + 1));
        image
            .save_with_format(&path, image::ImageFormat::Png)
            .with_context(|| format!("cannot write {}", path.display()))?;
        tracing::debug!(path = %path.display(), device_frame_id = frame.device_frame_id, "frame saved");
        saved.push((image.width(), image.height()));
    }
    let (w, h) = saved.last().copied().unwrap_or_default();
    Ok(format!(
        "wrote {count} frames ({w}x{h}) to {}",
        out.display()
    ))
}

/// `bridge modbus`: the Modbus/TCP bridge (a separate process; no model, no camera). Its config
/// is compiled by the config compiler like the daemon's; it runs until SIGINT or SIGTERM.
pub fn bridge_modbus(config: &Path) -> Result<()> {
    let cfg = crate::config::BridgeConfig::load(config)?;
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "bridge config");
    }
    crate::bridge::run(cfg).context("Modbus bridge")
}

/// `gateway`: metrics, the operator page and MQTT (a separate process; no model, no camera).
/// Its config is compiled like the daemon's; it runs until SIGINT or SIGTERM.
pub fn gateway(config: &Path) -> Result<()> {
    let cfg = crate::config::GatewayConfig::load(config)?;
    for w in &cfg.warnings {
        tracing::warn!(warning = %w, "gateway config");
    }
    crate::gateway::run(cfg).context("gateway")
}

/// `devices`: the cameras each back end finds now, with the `device = ` value that selects them.
/// A back end that cannot list is reported in its section; the command fails only when no back
/// end could list at all.
pub fn devices() -> Result<String> {
    use crate::source::{genicam, uvc};
    let mut out = String::from("UVC cameras ([source] kind = \"uvc\"):\n");
    let uvc = uvc::list_devices();
    match &uvc {
        Ok(found) if found.is_empty() => out.push_str("  no UVC cameras found\n"),
        Ok(found) => found
            .iter()
            .for_each(|d| out.push_str(&format!("  {}\n", d.to_string().replace('\n', "\n  ")))),
        Err(e) => out.push_str(&format!("  {}\n", crate::error::chain(&e))),
    }
    out.push_str("GenICam cameras ([source] kind = \"genicam\"):\n");
    let genicam = genicam::list_devices();
    match &genicam {
        Ok(found) if found.is_empty() => out.push_str("  no GenICam cameras found\n"),
        Ok(found) => found.iter().for_each(|d| {
            out.push_str(&format!(
                "  {} {} ({})  device = {:?}\n    serial/MAC {}, address {}\n",
                d.vendor, d.model, d.protocol, d.id, d.physical_id, d.address
            ))
        }),
        Err(e) => out.push_str(&format!(
            "  cannot list GenICam cameras: {}\n",
            crate::error::chain(&e)
        )),
    }
    if let (Err(u), Err(g)) = (uvc, genicam) {
        bail!(
            "no camera back end could list its cameras (UVC: {}; GenICam: {})",
            crate::error::chain(&u),
            crate::error::chain(&g)
        );
    }
    Ok(out.trim_end().to_string())
}

/// `schema`: the protocol's JSON Schema for one direction, on stdout.
pub fn schema(which: crate::cli::SchemaKind) -> Result<()> {
    let direction = match which {
        crate::cli::SchemaKind::Messages => wire::Direction::Messages,
        crate::cli::SchemaKind::Commands => wire::Direction::Commands,
    };
    let mut out = std::io::stdout().lock();
    out.write_all(wire::schema(direction).as_bytes())
        .and_then(|()| out.flush())
        .context("cannot write the schema to stdout")
}
