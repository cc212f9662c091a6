//! A stop signal that threads can poll or sleep on.
//!
//! Raised once (by a signal handler thread or a test); every holder sees it. Sleeping on it
//! returns early when it is raised, so paced sources stop promptly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use std::sync::Mutex;

#[derive(Clone)]
pub struct StopSignal {
    raised: Arc<AtomicBool>,
    // Dropping the sender disconnects every receiver: that is the wake-up.
    sender: Arc<Mutex<Option<Sender<()>>>>,
    receiver: Receiver<()>,
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignal {
    pub fn new() -> Self {
        let (tx, rx) = bounded(0);
        Self {
            raised: Arc::new(AtomicBool::new(false)),
            sender: Arc::new(Mutex::new(Some(tx))),
            receiver: rx,
        }
    }

    /// Raises the signal; idempotent.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        if let Ok(mut guard) = self.sender.lock() {
            guard.take();
        }
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Sleeps for `d` or until raised; returns `true` if raised.
    pub fn sleep(&self, d: Duration) -> bool {
        if self.is_raised() {
            return true;
        }
        let _ = self.receiver.recv_timeout(d);
        self.is_raised()
    }

    /// A receiver that disconnects when the signal is raised, for `select!`.
    pub fn receiver(&self) -> &Receiver<()> {
        &self.receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn sleep_returns_early_when_raised() {
        let s = StopSignal::new();
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let raised = s2.sleep(Duration::from_secs(30));
            (raised, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        s.raise();
        let (raised, waited) = t.join().unwrap();
        assert!(raised);
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert!(!StopSignal::new().sleep(Duration::from_millis(1)));
    }
}
