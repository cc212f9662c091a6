//! A camera whose driver blocks forever inside its read (as a stalled V4L2 driver does): the
//! pipeline's frame timeout fires within its bound, `camera_lost` goes out on the socket, the
//! camera is reopened with backoff, `camera_restored` follows and verdicts resume — through the
//! real `CameraBackend` interface, the real model, a real Unix socket.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Artifacts, temp_dir};
use image::DynamicImage;
use inspectord::config::{Overload, ScoringConfig};
use inspectord::encoder::Model;
use inspectord::inspect::{Inspector, Scorer};
use inspectord::pipeline::{self, Input, Pipeline, Signals, Triggering, WaitClients};
use inspectord::preprocess::{Preprocessor, decode};
use inspectord::references::ReferenceSet;
use inspectord::sink::Sink;
use inspectord::sink::socket::SocketSink;
use inspectord::socket::{self, SocketServer, SocketSettings};
use inspectord::source::camera::{
    CameraBackend, CaptureDevice, CaptureError, CapturedFrame, Supervision,
};
use inspectord::stop::StopSignal;

const FRAME_TIMEOUT: Duration = Duration::from_millis(600);
const FRAMES_BEFORE_STALL: u64 = 5;

/// Opens devices that deliver a real ELPV image every 20 ms; the first one stalls forever
/// after a few frames.
struct StallingCamera {
    image: DynamicImage,
    opens: AtomicUsize,
    stalled_at: Arc<Mutex<Option<Instant>>>,
}

struct Device {
    image: DynamicImage,
    stall_after: Option<u64>,
    delivered: u64,
    stalled_at: Arc<Mutex<Option<Instant>>>,
}

impl CameraBackend for StallingCamera {
    fn name(&self) -> &str {
        "test-camera"
    }

    fn open(&self) -> Result<Box<dyn CaptureDevice>, CaptureError> {
        let n = self.opens.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(Device {
            image: self.image.clone(),
            stall_after: (n == 0).then_some(FRAMES_BEFORE_STALL),
            delivered: 0,
            stalled_at: self.stalled_at.clone(),
        }))
    }
}

impl CaptureDevice for Device {
    fn read(&mut self) -> Result<CapturedFrame, CaptureError> {
        if self.stall_after == Some(self.delivered) {
            *self.stalled_at.lock().unwrap() = Some(Instant::now());
            loop {
                // A driver call that never returns.
                std::thread::park();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        self.delivered += 1;
        Ok(CapturedFrame {
            image: self.image.clone(),
            device_frame_id: Some(self.delivered),
        })
    }

    fn granted(&self) -> String {
        "test camera, 300x300 gray".into()
    }
}

#[test]
fn a_read_that_blocks_forever_is_detected_and_the_camera_recovers() {
    let dir = temp_dir();
    let art = Artifacts::snapshot(dir.path());
    let runtime = inspectord::onnxruntime::init(None).expect("ONNX Runtime (make onnxruntime)");
    let model = Model::load(runtime, &art.model).unwrap();
    let set = ReferenceSet::load(
        &art.references,
        &model.sha256,
        &model.path,
        model.contract.embedding_dim,
    )
    .unwrap();
    let scorer = Scorer::new(set, &ScoringConfig::default()).unwrap();
    let sock_path = dir.path().join("v.sock");
    let listener = socket::bind(&sock_path, 0o660).unwrap();
    let settings = SocketSettings {
        client_buffer: 1024,
        max_clients: 4,
        ..SocketSettings::default()
    };
    let run = socket::RunInfo::new(&model.sha256, &scorer.id);
    let socket = SocketServer::new(listener, Some(sock_path.clone()), run, settings).unwrap();
    let inspectors = vec![Inspector::new(
        Preprocessor::new(model.contract.clone()),
        model.encoder(runtime, 1).unwrap(),
    )];
    let image = decode(&std::fs::read(common::image(&art.predictions[0].file)).unwrap()).unwrap();
    let stalled_at = Arc::new(Mutex::new(None));
    let camera = Arc::new(StallingCamera {
        image,
        opens: AtomicUsize::new(0),
        stalled_at: stalled_at.clone(),
    });
    let stop = StopSignal::new();
    let supervision = Supervision {
        frame_timeout: FRAME_TIMEOUT,
        open_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        every_nth: 1,
        roi: None,
    };
    let (server, broadcaster) = socket;
    let wait_clients = WaitClients {
        count: 1,
        connected: broadcaster.connected_counter(),
    };
    let model_sha256: Arc<str> = Arc::from(model.sha256.as_str());
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(SocketSink::new(broadcaster))];
    let (_control_tx, control) = pipeline::control_channel();
    let p = Pipeline {
        source: Input::Camera {
            backend: camera.clone(),
            supervision,
        },
        triggering: Triggering::FreeRun,
        trigger_timeout: Duration::from_millis(1000),
        overload: Overload::Wait,
        control,
        inspectors,
        scorer: pipeline::shared_scorer(scorer),
        model_sha256,
        queue_depth: 4,
        sinks,
        socket: Some(server),
        wait_clients: Some(wait_clients),
        stop: stop.clone(),
        signals: Signals::Ignore,
        notifier: None,
        // A camera that stalls is lost, not a wedged pipeline: the stall clock never runs.
        stall_timeout: Duration::from_millis(200),
    };
    let daemon = std::thread::spawn(move || pipeline::run(p));

    let client = UnixStream::connect(&sock_path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut lines = BufReader::new(client).lines();
    let mut verdicts = Vec::new();
    let mut lost_at = None;
    let mut restored = false;
    let mut verdicts_after_restore = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while verdicts_after_restore < 10 && Instant::now() < deadline {
        let line = lines
            .next()
            .expect("socket closed early")
            .expect("no line within 10 s");
        let msg: serde_json::Value = serde_json::from_str(&line).unwrap();
        common::assert_valid_message(&msg);
        match (msg["type"].as_str(), msg["event"].as_str()) {
            (Some("verdict"), _) => {
                assert!(
                    matches!(msg["verdict"].as_str(), Some("pass" | "fail")),
                    "{msg}"
                );
                assert_eq!(msg["source"], "test-camera");
                verdicts.push(msg["seq"].as_u64().unwrap());
                if restored {
                    verdicts_after_restore += 1;
                }
            }
            (Some("status"), Some("camera_lost")) => {
                assert!(lost_at.is_none(), "lost twice: {msg}");
                assert!(
                    msg["reason"].as_str().unwrap().contains("no frame"),
                    "{msg}"
                );
                assert_eq!(msg["after_seq"].as_u64(), Some(FRAMES_BEFORE_STALL));
                lost_at = Some(Instant::now());
            }
            (Some("status"), Some("camera_restored")) => {
                assert!(lost_at.is_some(), "restored before lost");
                restored = true;
            }
            // Heartbeats (protocol v2) come between the other lines.
            (Some("hello") | Some("heartbeat"), _) => {}
            other => panic!("unexpected message {other:?}: {msg}"),
        }
    }
    stop.raise();
    let summary = daemon.join().unwrap().unwrap();

    let stalled = stalled_at
        .lock()
        .unwrap()
        .expect("the device never stalled");
    let lost = lost_at.expect("no camera_lost");
    let detection = lost.duration_since(stalled);
    assert!(
        detection >= FRAME_TIMEOUT - Duration::from_millis(50),
        "lost too early: {detection:?}"
    );
    assert!(
        detection < FRAME_TIMEOUT + Duration::from_millis(700),
        "lost too late: {detection:?}"
    );
    assert!(
        restored && verdicts_after_restore >= 10,
        "verdicts did not resume"
    );
    assert_eq!(
        camera.opens.load(Ordering::SeqCst),
        2,
        "one reopen after one loss"
    );
    // every frame taken got its verdict, in order, without gaps
    let want: Vec<u64> = (1..=verdicts.len() as u64).collect();
    assert_eq!(verdicts, want);
    assert!(summary.frames >= verdicts.len() as u64);
    assert_eq!(summary.error, 0);
}
