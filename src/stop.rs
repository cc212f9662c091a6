//! A stop signal that threads can poll or sleep on.
//!
//! Raised once (by a signal handler thread or a test); every holder sees it. Sleeping on it
//! returns early when it is raised, so paced sources stop promptly.
//!
//! The single-threaded clients of the socket (the Modbus bridge, the gateway) stop instead on
//! [`SignalPipe`]: SIGINT and SIGTERM as a readable end registered in their `mio` loop.

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

/// SIGINT and SIGTERM as readiness in a `mio` loop: the handlers write to a socket pair whose
/// reading end is registered under the caller's token.
pub struct SignalPipe {
    reader: mio::net::UnixStream,
}

impl SignalPipe {
    pub fn register(registry: &mio::Registry, token: mio::Token) -> std::io::Result<SignalPipe> {
        let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        let mut reader = mio::net::UnixStream::from_std(reader);
        registry.register(&mut reader, token, mio::Interest::READABLE)?;
        Ok(SignalPipe { reader })
    }

    /// Reads what the handlers wrote (the event is the news: stop).
    pub fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(std::io::Read::read(&mut self.reader, &mut buf), Ok(n) if n > 0) {}
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
