//! Trigger mode through the control channel: a frame is taken only when a trigger arrives, every
//! trigger is answered exactly once (acknowledged with its acquisition id, or missed with the
//! reason), and every acknowledged trigger gets exactly one verdict (`skipped` when its frame
//! does not come in time). Also the overload policy `skip`. Real pipeline, real model, real
//! images; the service manager's notification socket is a real datagram socket, so a watchdog
//! stall would show as missing `WATCHDOG=1` datagrams. The camera timeouts use a test double of
//! the camera device (a read that blocks, a device that is gone); `tests/genicam.rs` does the
//! same against the real Aravis fake camera.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use common::{Artifacts, temp_dir};
use image::DynamicImage;
use inspectord::config::{Overload, ReplayConfig, ScoringConfig};
use inspectord::encoder::Model;
use inspectord::inspect::{Inspector, Scorer};
use inspectord::pipeline::{
    self, Control, Input, Pipeline, Signals, Trigger, TriggerAnswer, Triggering,
};
use inspectord::preprocess::{Preprocessor, decode};
use inspectord::references::ReferenceSet;
use inspectord::service::Notifier;
use inspectord::sink::{Ready, Sink};
use inspectord::source::camera::{
    CameraBackend, CaptureDevice, CaptureError, CapturedFrame, Supervision,
};
use inspectord::source::replay::ReplaySource;
use inspectord::stop::StopSignal;
use inspectord::verdict::{Outcome, StatusEvent, StatusKind};

/// Longer than every timeout in play: the stall timeout, the watchdog interval and the
/// camera's frame timeout.
const IDLE: Duration = Duration::from_millis(1500);
const STALL_TIMEOUT: Duration = Duration::from_millis(300);
const FRAME_TIMEOUT: Duration = Duration::from_millis(300);
/// Slack on top of a timeout for its verdict to reach the sink.
const SLACK: Duration = Duration::from_millis(700);

/// One test at a time: the first sets environment variables, and the machine has few cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
enum Seen {
    Verdict {
        seq: u64,
        frame: String,
        part: Option<String>,
        acq_id: Option<u64>,
        kind: &'static str,
        /// A skipped or error verdict's reason.
        reason: Option<String>,
        line: String,
    },
    Status(StatusKind),
}

/// A sink that hands everything it gets to the test.
struct Collect(mpsc::Sender<Seen>);

impl Sink for Collect {
    fn name(&self) -> &'static str {
        "collect"
    }
    fn verdict(&mut self, r: &Ready<'_>) {
        let reason = match &r.verdict.outcome {
            Outcome::Skipped { reason } | Outcome::Error { reason } => Some(reason.clone()),
            Outcome::Inspected { .. } => None,
        };
        let _ = self.0.send(Seen::Verdict {
            seq: r.verdict.seq,
            frame: r.verdict.frame.clone(),
            part: r.verdict.trigger.as_ref().and_then(|t| t.part_id.clone()),
            acq_id: r.verdict.trigger.as_ref().map(|t| t.acq_id),
            kind: r.verdict.label(),
            reason,
            line: r.line.to_string(),
        });
    }
    fn status(&mut self, e: &StatusEvent, _line: &Arc<str>) {
        let _ = self.0.send(Seen::Status(e.kind));
    }
}

struct Run {
    control: crossbeam_channel::Sender<Control>,
    seen: mpsc::Receiver<Seen>,
    /// Every trigger's answer, with the trigger's part id.
    answers: mpsc::Receiver<(String, TriggerAnswer)>,
    answer_tx: mpsc::Sender<(String, TriggerAnswer)>,
    stop: StopSignal,
    daemon: std::thread::JoinHandle<Result<pipeline::Tally, pipeline::PipelineError>>,
}

/// How a run is set up.
struct Opts {
    triggering: Triggering,
    overload: Overload,
    workers: usize,
    queue_depth: usize,
    trigger_timeout: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            triggering: Triggering::Control,
            overload: Overload::Wait,
            workers: 2,
            queue_depth: 4,
            trigger_timeout: Duration::from_millis(1000),
        }
    }
}

fn start(art: &Artifacts, input: Input, notifier: Option<Notifier>) -> Run {
    start_with(art, input, notifier, Opts::default())
}

fn start_with(art: &Artifacts, input: Input, notifier: Option<Notifier>, opts: Opts) -> Run {
    let runtime = inspectord::onnxruntime::init(None).expect("ONNX Runtime (make onnxruntime)");
    let model = Model::load(runtime, &art.model).expect("model");
    let set = ReferenceSet::load(
        &art.references,
        &model.sha256,
        &model.path,
        model.contract.embedding_dim,
    )
    .expect("references");
    let inspectors = (0..opts.workers)
        .map(|_| {
            Inspector::new(
                Preprocessor::new(model.contract.clone()),
                model.encoder(runtime, 1).expect("session"),
            )
        })
        .collect();
    let (tx, seen) = mpsc::channel();
    let (control_tx, control) = pipeline::control_channel();
    let stop = StopSignal::new();
    let p = Pipeline {
        source: input,
        triggering: opts.triggering,
        trigger_timeout: opts.trigger_timeout,
        overload: opts.overload,
        control,
        inspectors,
        scorer: pipeline::shared_scorer(Scorer::new(set, &ScoringConfig::default()).unwrap()),
        model_sha256: Arc::from(model.sha256.as_str()),
        queue_depth: opts.queue_depth,
        sinks: vec![Box::new(Collect(tx))],
        socket: None,
        wait_clients: None,
        stop: stop.clone(),
        signals: Signals::Ignore,
        notifier,
        stall_timeout: STALL_TIMEOUT,
    };
    let daemon = std::thread::spawn(move || pipeline::run(p));
    let (answer_tx, answers) = mpsc::channel();
    Run {
        control: control_tx,
        seen,
        answers,
        answer_tx,
        stop,
        daemon,
    }
}

/// Sends a trigger for `part`; its answer arrives on `run.answers`. A trigger the closed
/// channel refuses is dropped here, and answers itself.
fn trigger(run: &Run, part: &str) {
    send_trigger(&run.control, &run.answer_tx, part);
}

fn send_trigger(
    control: &crossbeam_channel::Sender<Control>,
    answers: &mpsc::Sender<(String, TriggerAnswer)>,
    part: &str,
) {
    let tx = answers.clone();
    let name = part.to_string();
    let t = Trigger {
        part_id: Some(part.into()),
        answer: Box::new(move |a| {
            let _ = tx.send((name, a));
        }),
    };
    let _ = control.send(Control::Trigger(t));
}

/// The next trigger answer, which must be for `part`.
fn answer(run: &Run, part: &str) -> TriggerAnswer {
    let (p, a) = run
        .answers
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no answer to trigger {part}"));
    assert_eq!(p, part, "answers out of order: {a:?}");
    a
}

fn acked(run: &Run, part: &str) -> u64 {
    match answer(run, part) {
        TriggerAnswer::Acked { acq_id } => acq_id,
        other => panic!("trigger {part}: expected an ack, got {other:?}"),
    }
}

fn missed(run: &Run, part: &str) -> String {
    match answer(run, part) {
        TriggerAnswer::Missed { reason } => reason,
        other => panic!("trigger {part}: expected a miss, got {other:?}"),
    }
}

/// Everything seen within `within`.
fn drain(seen: &mpsc::Receiver<Seen>, within: Duration) -> Vec<Seen> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while let Ok(s) = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        out.push(s);
    }
    out
}

fn next_verdict(seen: &mpsc::Receiver<Seen>) -> Seen {
    match seen.recv_timeout(Duration::from_secs(30)) {
        Ok(s @ Seen::Verdict { .. }) => s,
        other => panic!("expected a verdict, got {other:?}"),
    }
}

/// `WATCHDOG=1` datagrams received so far.
fn watchdog_pings(sock: &UnixDatagram) -> usize {
    let mut buf = [0u8; 4096];
    let mut pings = 0;
    while let Ok(n) = sock.recv(&mut buf) {
        pings += String::from_utf8_lossy(&buf[..n])
            .lines()
            .filter(|l| *l == "WATCHDOG=1")
            .count();
    }
    pings
}

#[test]
fn replay_in_trigger_mode_takes_one_frame_per_trigger_and_idles_healthily() {
    let _serial = serial();
    let dir = temp_dir();
    let art = Artifacts::snapshot(dir.path());
    let images = dir.path().join("images");
    let names = art.copy_heldout(&images, 3, 3);

    // A real notification socket, as systemd gives one; the watchdog wants a ping every 200 ms.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    notify.set_nonblocking(true).unwrap();
    // SAFETY: set before any thread of this test binary's only test starts.
    unsafe {
        std::env::set_var("NOTIFY_SOCKET", &notify_path);
        std::env::set_var("WATCHDOG_USEC", "200000");
    }
    let notifier = Notifier::from_env().expect("NOTIFY_SOCKET is set");
    assert_eq!(notifier.watchdog(), Some(Duration::from_millis(200)));

    let source = ReplaySource::new(&ReplayConfig {
        looping: false,
        ..ReplayConfig::of(images)
    })
    .unwrap();
    let run = start(&art, Input::Frames(Box::new(source)), Some(notifier));

    // No trigger for longer than the stall timeout and several watchdog intervals: no frame is
    // taken, and the watchdog keeps being fed.
    std::thread::sleep(Duration::from_millis(300));
    let before = watchdog_pings(&notify);
    let idle = drain(&run.seen, IDLE);
    assert!(idle.is_empty(), "frames taken without a trigger: {idle:?}");
    let pings = watchdog_pings(&notify);
    assert!(
        pings >= 4,
        "only {pings} WATCHDOG=1 in {IDLE:?} without triggers (after {before} at start): an idle wait was taken for a stall"
    );

    // N triggers -> N acks with acquisition ids 1..=N, and exactly N verdicts, in order, each
    // for its part, its acquisition and the next file.
    let n = 4;
    for i in 1..=n {
        trigger(&run, &format!("P{i}"));
    }
    for i in 1..=n {
        assert_eq!(acked(&run, &format!("P{i}")), i as u64);
    }
    for i in 1..=n {
        let Seen::Verdict {
            seq,
            frame,
            part,
            acq_id,
            line,
            ..
        } = next_verdict(&run.seen)
        else {
            unreachable!()
        };
        assert_eq!(acq_id, Some(i as u64));
        assert_eq!(seq, i as u64);
        assert_eq!(frame, names[i - 1]);
        assert_eq!(part.as_deref(), Some(format!("P{i}").as_str()));
        let wire: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(wire["part_id"], format!("P{i}"), "{line}");
        assert_eq!(wire["acq_id"], i as u64, "{line}");
        common::assert_wire_verdict(&wire);
    }
    // And nothing more until the next trigger.
    let extra = drain(&run.seen, Duration::from_millis(800));
    assert!(extra.is_empty(), "verdicts without a trigger: {extra:?}");
    assert!(
        watchdog_pings(&notify) >= 2,
        "watchdog not fed after the triggers"
    );

    trigger(&run, "P5");
    assert_eq!(acked(&run, "P5"), 5);
    assert!(matches!(
        next_verdict(&run.seen),
        Seen::Verdict {
            seq: 5,
            acq_id: Some(5),
            ..
        }
    ));

    // The sixth and last image, then the replay runs out: the trigger that finds no image and
    // the one still waiting behind it are missed, "source ended", and the run ends by itself.
    for part in ["P6", "P7", "P8"] {
        trigger(&run, part);
    }
    assert_eq!(acked(&run, "P6"), 6);
    assert_eq!(missed(&run, "P7"), "source ended");
    let p8 = missed(&run, "P8");
    // P8 is in the channel when the source ends, unless the source got there first: then the
    // closed channel refuses it (the daemon is stopping: the replay was its only source).
    assert!(
        p8 == "source ended" || p8 == pipeline::DAEMON_STOPPING,
        "P8: {p8}"
    );
    let tally = run.daemon.join().unwrap().unwrap();
    assert_eq!(tally.frames, 6);
    let rest = drain(&run.seen, Duration::from_millis(200));
    assert!(
        matches!(
            rest.as_slice(),
            [Seen::Verdict {
                seq: 6,
                acq_id: Some(6),
                ..
            }]
        ),
        "after the last image: {rest:?}"
    );
    assert!(run.answers.try_recv().is_err(), "a trigger answered twice");
    camera_in_trigger_mode_is_idle_not_lost(&art);
}

/// A camera that answers every read with a real ELPV image at once, and counts the reads.
struct ReadCountingCamera {
    image: DynamicImage,
    reads: Arc<AtomicUsize>,
}

struct Device {
    image: DynamicImage,
    reads: Arc<AtomicUsize>,
}

impl CameraBackend for ReadCountingCamera {
    fn name(&self) -> &str {
        "test-camera"
    }
    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        Ok(Box::new(Device {
            image: self.image.clone(),
            reads: self.reads.clone(),
        }))
    }
}

impl CaptureDevice for Device {
    fn read(&mut self) -> Result<CapturedFrame, CaptureError> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        Ok(CapturedFrame {
            image: self.image.clone(),
            device_frame_id: Some(n),
        })
    }
    fn granted(&self) -> String {
        "test camera, 300x300 gray, read on trigger".into()
    }
}

/// Trigger mode on a camera: each trigger is one read on the capture thread; waiting longer
/// than the frame timeout for a trigger is not `camera_lost`.
fn camera_in_trigger_mode_is_idle_not_lost(art: &Artifacts) {
    let file = &art.predictions[0].file;
    let image = decode(&std::fs::read(common::image(file)).unwrap()).unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let camera = Arc::new(ReadCountingCamera {
        image,
        reads: reads.clone(),
    });
    let supervision = Supervision {
        frame_timeout: FRAME_TIMEOUT,
        open_timeout: Duration::from_millis(300),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        every_nth: 1,
        roi: None,
    };
    let input = Input::Camera {
        backend: camera,
        supervision,
    };
    let run = start(art, input, None);
    let idle = drain(&run.seen, IDLE);
    assert!(
        !idle
            .iter()
            .any(|s| matches!(s, Seen::Status(StatusKind::CameraLost))),
        "waiting for a trigger was taken for a lost camera: {idle:?}"
    );
    assert!(
        idle.is_empty(),
        "camera events or frames without a trigger: {idle:?}"
    );
    assert_eq!(
        reads.load(Ordering::SeqCst),
        0,
        "the camera was read without a trigger"
    );
    for i in 1..=3 {
        trigger(&run, &format!("C{i}"));
    }
    for i in 1..=3u64 {
        assert_eq!(acked(&run, &format!("C{i}")), i);
    }
    for i in 1..=3u64 {
        let Seen::Verdict {
            seq,
            frame,
            part,
            acq_id,
            ..
        } = next_verdict(&run.seen)
        else {
            unreachable!()
        };
        assert_eq!((seq, frame.as_str()), (i, i.to_string().as_str()));
        assert_eq!(part, Some(format!("C{i}")));
        assert_eq!(acq_id, Some(i));
    }
    let idle = drain(&run.seen, IDLE);
    assert!(idle.is_empty(), "after the triggers: {idle:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 3);
    run.stop.raise();
    assert_eq!(run.daemon.join().unwrap().unwrap().frames, 3);
}

/// Every answer left after the run, by part.
fn all_answers(
    answers: &mpsc::Receiver<(String, TriggerAnswer)>,
) -> BTreeMap<String, Vec<TriggerAnswer>> {
    let mut by_part: BTreeMap<String, Vec<TriggerAnswer>> = BTreeMap::new();
    while let Ok((part, a)) = answers.recv_timeout(Duration::from_millis(300)) {
        by_part.entry(part).or_default().push(a);
    }
    by_part
}

/// The verdicts among `seen`, as (seq, acq_id, kind, reason, frame).
type Row = (u64, Option<u64>, &'static str, Option<String>, String);

fn verdict_rows(seen: &[Seen]) -> Vec<Row> {
    seen.iter()
        .filter_map(|s| match s {
            Seen::Verdict {
                seq,
                acq_id,
                kind,
                reason,
                line,
                frame,
                ..
            } => {
                common::assert_wire_verdict(&serde_json::from_str(line).unwrap());
                Some((*seq, *acq_id, *kind, reason.clone(), frame.clone()))
            }
            Seen::Status(_) => None,
        })
        .collect()
}

/// Triggers still waiting when the run stops are answered ("daemon stopping"), each exactly
/// once, and every acknowledged one has exactly one verdict.
#[test]
fn triggers_left_at_stop_are_answered() {
    let _serial = serial();
    let dir = temp_dir();
    let art = Artifacts::snapshot(dir.path());
    let images = dir.path().join("images");
    art.copy_heldout(&images, 2, 2);
    // Paced at 2 frames/s: most triggers are still waiting when the stop comes.
    let source = ReplaySource::new(&ReplayConfig {
        looping: true,
        fps: 2.0,
        ..ReplayConfig::of(images)
    })
    .unwrap();
    let run = start(&art, Input::Frames(Box::new(source)), None);
    let n = 20;
    for i in 0..n {
        trigger(&run, &format!("S{i}"));
    }
    std::thread::sleep(Duration::from_millis(700));
    run.stop.raise();
    let Run {
        control,
        seen,
        answers,
        answer_tx,
        daemon,
        ..
    } = run;
    let tally = daemon.join().unwrap().unwrap();
    // After the run, a trigger meets a closed channel: it is answered all the same.
    send_trigger(&control, &answer_tx, "late");
    drop(answer_tx);
    let run_answers = answers;
    let answers = all_answers(&run_answers);
    assert_eq!(
        answers.len(),
        n + 1,
        "triggers without an answer: {answers:?}"
    );
    let mut acks = BTreeSet::new();
    let mut stopping = 0;
    for (part, a) in &answers {
        assert_eq!(a.len(), 1, "{part} answered {} times: {a:?}", a.len());
        match &a[0] {
            TriggerAnswer::Acked { acq_id } => assert!(acks.insert(*acq_id)),
            TriggerAnswer::Missed { reason } if reason == pipeline::DAEMON_STOPPING => {
                stopping += 1
            }
            other => panic!("{part}: {other:?}"),
        }
    }
    assert!(
        !acks.is_empty() && stopping >= 10,
        "acks {acks:?}, stopping {stopping}"
    );
    assert_eq!(
        acks,
        (1..=acks.len() as u64).collect(),
        "acquisition ids 1..=N"
    );
    let rows = verdict_rows(&drain(&seen, Duration::from_millis(300)));
    let verdict_acqs: Vec<u64> = rows.iter().filter_map(|r| r.1).collect();
    assert_eq!(verdict_acqs, acks.iter().copied().collect::<Vec<_>>());
    assert_eq!(tally.frames, acks.len() as u64);
}

/// Overload policy `skip`: a free-running replay faster than one worker; frames that find the
/// queue full are `skipped` verdicts, in order, counted; none is lost.
#[test]
fn overload_skip_turns_frames_the_queue_cannot_take_into_skipped_verdicts() {
    let _serial = serial();
    let dir = temp_dir();
    let art = Artifacts::snapshot(dir.path());
    let images = dir.path().join("images");
    let names = art.copy_heldout(&images, 6, 6);
    let source = ReplaySource::new(&ReplayConfig {
        fps: 500.0,
        ..ReplayConfig::of(images)
    })
    .unwrap();
    let opts = Opts {
        triggering: Triggering::FreeRun,
        overload: Overload::Skip,
        workers: 1,
        queue_depth: 1,
        ..Opts::default()
    };
    let run = start_with(&art, Input::Frames(Box::new(source)), None, opts);
    let tally = run.daemon.join().unwrap().unwrap();
    let rows = verdict_rows(&drain(&run.seen, Duration::from_millis(300)));
    let seqs: Vec<u64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=names.len() as u64).collect::<Vec<_>>());
    let skipped: Vec<&Row> = rows.iter().filter(|r| r.2 == "skipped").collect();
    let inspected = rows
        .iter()
        .filter(|r| r.2 == "pass" || r.2 == "fail")
        .count();
    assert!(!skipped.is_empty(), "nothing skipped at 500 fps: {rows:?}");
    assert!(inspected >= 1, "nothing inspected: {rows:?}");
    assert_eq!(skipped.len() + inspected, names.len(), "{rows:?}");
    for r in &skipped {
        let reason = r.3.as_deref().unwrap_or_default();
        assert!(reason.starts_with("overload: "), "{r:?}");
        assert!(reason.ends_with(" frames queued"), "{r:?}");
    }
    assert_eq!(tally.frames, names.len() as u64);
    assert_eq!(tally.skipped, skipped.len() as u64);
    assert_eq!(tally.pass + tally.fail, inspected as u64);
}

/// A camera (test double of the device) whose read can be made slow once, or stuck, and
/// which can be gone (open fails).
struct FlakyCamera {
    image: DynamicImage,
    control: Arc<Flaky>,
}

#[derive(Default)]
struct Flaky {
    /// The next read takes this long (once), in milliseconds.
    slow_ms: AtomicU64,
    /// Reads block while set.
    stuck: AtomicBool,
    /// Opening fails while set.
    gone: AtomicBool,
    reads: AtomicUsize,
}

struct FlakyDevice {
    image: DynamicImage,
    control: Arc<Flaky>,
}

impl CameraBackend for FlakyCamera {
    fn name(&self) -> &str {
        "flaky-camera"
    }
    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        if self.control.gone.load(Ordering::SeqCst) {
            return Err(CaptureError::NotFound("flaky-camera (unplugged)".into()));
        }
        Ok(Box::new(FlakyDevice {
            image: self.image.clone(),
            control: self.control.clone(),
        }))
    }
}

impl CaptureDevice for FlakyDevice {
    fn read(&mut self) -> Result<CapturedFrame, CaptureError> {
        let slow = self.control.slow_ms.swap(0, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(slow));
        while self.control.stuck.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let n = self.control.reads.fetch_add(1, Ordering::SeqCst) as u64 + 1;
        Ok(CapturedFrame {
            image: self.image.clone(),
            device_frame_id: Some(n),
        })
    }
    fn granted(&self) -> String {
        "flaky test camera, read on trigger".into()
    }
}

/// The next verdict within `within`, skipping status events (returned separately).
fn verdict_within(run: &Run, within: Duration, statuses: &mut Vec<StatusKind>) -> Option<Row> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match run.seen.recv_timeout(left) {
            Ok(Seen::Status(k)) => statuses.push(k),
            Ok(v @ Seen::Verdict { .. }) => return verdict_rows(&[v]).pop(),
            Err(_) => return None,
        }
    }
}

/// Trigger mode on a camera whose frames stop coming: an acknowledged trigger whose frame does
/// not come within the trigger timeout gets one `skipped` verdict (a frame that comes later is
/// dropped, never a second verdict); a stuck camera is lost and, while lost, triggers are
/// missed ("camera lost"); after the camera is back, triggers are taken again. Exactly one
/// verdict per acknowledged trigger, counted.
#[test]
fn camera_trigger_timeout_skips_and_lost_camera_misses() {
    let _serial = serial();
    let dir = temp_dir();
    let art = Artifacts::snapshot(dir.path());
    let file = &art.predictions[0].file;
    let image = decode(&std::fs::read(common::image(file)).unwrap()).unwrap();
    let flaky = Arc::new(Flaky::default());
    let camera = Arc::new(FlakyCamera {
        image,
        control: flaky.clone(),
    });
    let trigger_timeout = Duration::from_millis(500);
    let frame_timeout = Duration::from_millis(1500);
    let supervision = Supervision {
        frame_timeout,
        open_timeout: Duration::from_millis(300),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        every_nth: 1,
        roi: None,
    };
    let input = Input::Camera {
        backend: camera,
        supervision,
    };
    let opts = Opts {
        trigger_timeout,
        ..Opts::default()
    };
    let run = start_with(&art, input, None, opts);
    let mut statuses = Vec::new();
    let mut verdicts: Vec<Row> = Vec::new();
    let mut expect = |run: &Run, within: Duration, statuses: &mut Vec<StatusKind>| {
        let v = verdict_within(run, within, statuses).expect("a verdict in time");
        verdicts.push(v.clone());
        v
    };
    std::thread::sleep(Duration::from_millis(300));

    // A trigger whose frame comes: inspected.
    trigger(&run, "A");
    assert_eq!(acked(&run, "A"), 1);
    let v = expect(&run, Duration::from_secs(30), &mut statuses);
    assert!(matches!(v, (1, Some(1), "pass" | "fail", None, _)), "{v:?}");

    // A read slower than the trigger timeout (but not the frame timeout): skipped at the
    // timeout; the late frame is dropped; the next trigger gets its own frame.
    flaky.slow_ms.store(750, Ordering::SeqCst);
    trigger(&run, "B");
    let sent = Instant::now();
    assert_eq!(acked(&run, "B"), 2);
    let v = expect(&run, trigger_timeout + SLACK, &mut statuses);
    assert!(sent.elapsed() >= trigger_timeout, "skipped too early");
    assert_eq!(
        (v.0, v.1, v.2, v.3.as_deref()),
        (
            2,
            Some(2),
            "skipped",
            Some("trigger timeout: no frame within 500 ms")
        )
    );
    // C while B's read is still under way: B's late frame (the camera's read 2) is dropped,
    // not taken for C, whose frame is the camera's read 3; no second verdict for B.
    trigger(&run, "C");
    assert_eq!(acked(&run, "C"), 3);
    let v = expect(&run, Duration::from_secs(30), &mut statuses);
    assert_eq!(
        (v.0, v.1, v.2 == "skipped", v.4.as_str()),
        (3, Some(3), false, "3"),
        "{v:?}"
    );
    assert!(
        verdict_within(&run, Duration::from_millis(700), &mut statuses).is_none(),
        "the late frame made a second verdict"
    );

    // The camera hangs and disappears: the acknowledged triggers are skipped at the trigger
    // timeout, the camera is lost at the frame timeout, later triggers are missed.
    flaky.gone.store(true, Ordering::SeqCst);
    flaky.stuck.store(true, Ordering::SeqCst);
    trigger(&run, "D");
    let stuck_at = Instant::now();
    assert_eq!(acked(&run, "D"), 4);
    std::thread::sleep(Duration::from_millis(150));
    trigger(&run, "E");
    assert_eq!(acked(&run, "E"), 5);
    for acq in [4, 5] {
        let v = expect(&run, trigger_timeout + SLACK, &mut statuses);
        assert_eq!((v.1, v.2), (Some(acq), "skipped"), "{v:?}");
    }
    assert!(
        common::wait_until(frame_timeout + SLACK, || {
            while let Ok(s) = run.seen.try_recv() {
                match s {
                    Seen::Status(k) => statuses.push(k),
                    v => panic!("a verdict while the camera hangs: {v:?}"),
                }
            }
            statuses.contains(&StatusKind::CameraLost)
        }),
        "no camera_lost {:?} after the camera hung",
        stuck_at.elapsed()
    );
    for part in ["F", "G"] {
        trigger(&run, part);
        assert_eq!(missed(&run, part), "camera lost");
        std::thread::sleep(Duration::from_millis(250));
    }

    // Back: the stuck read returns (to a capture given up: dropped), the camera reopens.
    flaky.stuck.store(false, Ordering::SeqCst);
    flaky.gone.store(false, Ordering::SeqCst);
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            while let Ok(s) = run.seen.try_recv() {
                match s {
                    Seen::Status(k) => statuses.push(k),
                    v => panic!("a verdict without a trigger: {v:?}"),
                }
            }
            statuses.contains(&StatusKind::CameraRestored)
        }),
        "camera not restored: {statuses:?}"
    );
    trigger(&run, "H");
    assert_eq!(acked(&run, "H"), 6);
    let v = expect(&run, Duration::from_secs(30), &mut statuses);
    assert!(matches!(v, (6, Some(6), "pass" | "fail", None, _)), "{v:?}");

    let rest = drain(&run.seen, Duration::from_millis(800));
    assert!(verdict_rows(&rest).is_empty(), "extra verdicts: {rest:?}");

    // Stop while an acknowledged trigger waits for a slow read: it still gets its verdict.
    flaky.slow_ms.store(5000, Ordering::SeqCst);
    trigger(&run, "Z");
    assert_eq!(acked(&run, "Z"), 7);
    run.stop.raise();
    let tally = run.daemon.join().unwrap().unwrap();
    let last = verdict_rows(&drain(&run.seen, Duration::from_millis(300)));
    assert_eq!(
        last.iter()
            .map(|v| (v.0, v.1, v.2, v.3.as_deref()))
            .collect::<Vec<_>>(),
        [(7, Some(7), "skipped", Some(pipeline::DAEMON_STOPPING))]
    );
    verdicts.extend(last);
    // Exactly one verdict per acknowledged trigger, seqs without gaps.
    let acqs: Vec<Option<u64>> = verdicts.iter().map(|v| v.1).collect();
    assert_eq!(acqs, (1..=7).map(Some).collect::<Vec<_>>());
    let seqs: Vec<u64> = verdicts.iter().map(|v| v.0).collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!((tally.frames, tally.skipped), (7, 4));
    assert!(run.answers.try_recv().is_err(), "a trigger answered twice");
}
