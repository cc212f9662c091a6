//! The verdict socket's event loop ends when its broadcaster is dropped, every time: the final
//! wake-up comes from the broadcaster's `Drop` and must not be lost (regression: the loop used to
//! sleep forever when the broadcaster closed the waker's eventfd before the loop saw the event).

use std::sync::mpsc;
use std::time::Duration;

use inspectord::socket::{RunInfo, SocketServer, SocketSettings};

/// Shutdowns per thread; several threads at once widen the race on a busy machine.
const ROUNDS: usize = 150;
const THREADS: usize = 4;

fn shutdowns(dir: &std::path::Path, thread: usize) {
    for round in 0..ROUNDS {
        let path = dir.join(format!("s{thread}-{round}.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let settings = SocketSettings {
            client_buffer: 8,
            max_clients: 4,
            ..SocketSettings::default()
        };
        let run = RunInfo::new("model", "references");
        let (server, broadcaster) =
            SocketServer::new(listener, Some(path.clone()), run, settings).unwrap();
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || done_tx.send(server.run().is_ok()));
        // Let the loop go idle in epoll_wait, then shut it down.
        std::thread::sleep(Duration::from_millis(1));
        drop(broadcaster);
        match done.recv_timeout(Duration::from_secs(10)) {
            Ok(ok) => assert!(ok, "the event loop failed"),
            Err(_) => panic!(
                "thread {thread}, round {round}: the event loop did not end after its broadcaster was dropped"
            ),
        }
        assert!(!path.exists(), "the loop did not remove its socket file");
    }
}

#[test]
fn event_loop_always_ends_when_the_broadcaster_is_dropped() {
    let dir = tempfile::Builder::new()
        .prefix("isd-")
        .tempdir_in("/tmp")
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let dir = dir.path();
            s.spawn(move || shutdowns(dir, t));
        }
    });
}
