//! Trigger mode through the control channel: a frame is taken only when a trigger arrives.
//! Real pipeline, real model, real images; the service manager's notification socket is a real
//! datagram socket, so a watchdog stall would show as missing `WATCHDOG=1` datagrams.

mod common;

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{Artifacts, temp_dir};
use image::DynamicImage;
use inspectord::config::{ReplayConfig, ScoringConfig};
use inspectord::encoder::Model;
use inspectord::inspect::{Inspector, Scorer};
use inspectord::pipeline::{self, Control, Input, Pipeline, Signals, Trigger, Triggering};
use inspectord::preprocess::{Preprocessor, decode};
use inspectord::references::ReferenceSet;
use inspectord::service::Notifier;
use inspectord::sink::{Ready, Sink};
use inspectord::source::camera::{
    CameraBackend, CaptureDevice, CaptureError, CapturedFrame, Supervision,
};
use inspectord::source::replay::ReplaySource;
use inspectord::stop::StopSignal;
use inspectord::verdict::{StatusEvent, StatusKind};

/// Longer than every timeout in play: the stall timeout, the watchdog interval and the
/// camera's frame timeout.
const IDLE: Duration = Duration::from_millis(1500);
const STALL_TIMEOUT: Duration = Duration::from_millis(300);
const FRAME_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug)]
enum Seen {
    Verdict {
        seq: u64,
        frame: String,
        part: Option<String>,
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
        let _ = self.0.send(Seen::Verdict {
            seq: r.verdict.seq,
            frame: r.verdict.frame.clone(),
            part: r.verdict.trigger.as_ref().and_then(|t| t.part_id.clone()),
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
    stop: StopSignal,
    daemon: std::thread::JoinHandle<Result<pipeline::Tally, pipeline::PipelineError>>,
}

fn start(art: &Artifacts, input: Input, notifier: Option<Notifier>) -> Run {
    let runtime = inspectord::onnxruntime::init(None).expect("ONNX Runtime (make onnxruntime)");
    let model = Model::load(runtime, &art.model).expect("model");
    let set = ReferenceSet::load(
        &art.references,
        &model.sha256,
        &model.path,
        model.contract.embedding_dim,
    )
    .expect("references");
    let inspectors = (0..2)
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
        triggering: Triggering::Control,
        control,
        inspectors,
        scorer: pipeline::shared_scorer(Scorer::new(set, &ScoringConfig::default()).unwrap()),
        model_sha256: Arc::from(model.sha256.as_str()),
        queue_depth: 4,
        sinks: vec![Box::new(Collect(tx))],
        socket: None,
        wait_clients: None,
        stop: stop.clone(),
        signals: Signals::Ignore,
        notifier,
        stall_timeout: STALL_TIMEOUT,
    };
    let daemon = std::thread::spawn(move || pipeline::run(p));
    Run {
        control: control_tx,
        seen,
        stop,
        daemon,
    }
}

fn trigger(run: &Run, part: &str) {
    run.control
        .send(Control::Trigger(Trigger::unanswered(Some(part.into()))))
        .expect("control channel open");
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

    // N triggers -> exactly N verdicts, in order, each for its part and the next file.
    let n = 4;
    for i in 1..=n {
        trigger(&run, &format!("P{i}"));
    }
    for i in 1..=n {
        let Seen::Verdict {
            seq,
            frame,
            part,
            line,
        } = next_verdict(&run.seen)
        else {
            unreachable!()
        };
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
    assert!(matches!(
        next_verdict(&run.seen),
        Seen::Verdict { seq: 5, .. }
    ));
    run.stop.raise();
    let tally = run.daemon.join().unwrap().unwrap();
    assert_eq!(tally.frames, 5);
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
        let Seen::Verdict {
            seq, frame, part, ..
        } = next_verdict(&run.seen)
        else {
            unreachable!()
        };
        assert_eq!((seq, frame.as_str()), (i, i.to_string().as_str()));
        assert_eq!(part, Some(format!("C{i}")));
    }
    let idle = drain(&run.seen, IDLE);
    assert!(idle.is_empty(), "after the triggers: {idle:?}");
    assert_eq!(reads.load(Ordering::SeqCst), 3);
    run.stop.raise();
    assert_eq!(run.daemon.join().unwrap().unwrap().frames, 3);
}
