//! The `signals` thread: SIGINT/SIGTERM raise the stop signal (a second one exits at once);
//! SIGHUP runs the reload hook and swaps the new scorer in between two frames.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::Sender;

use super::events::Event;
use super::slot::SharedScorer;
use super::{PipelineError, spawn};
use crate::inspect::Scorer;
use crate::service::Notifier;
use crate::stop::StopSignal;
use crate::verdict::{StatusEvent, StatusKind};

/// Why a reload was refused, with its whole chain of causes.
pub type ReloadError = Box<dyn std::error::Error + Send + Sync>;

/// SIGHUP's hook: builds the scorer to swap in, or says why not (the old one stays).
pub type Reload = Box<dyn FnMut() -> Result<Scorer, ReloadError> + Send>;

/// What the signal thread needs to answer SIGHUP.
pub(super) struct SighupReload {
    pub reload: Option<Reload>,
    pub scorer: SharedScorer,
    /// The sequencer's inbox: it announces the outcome to the sinks.
    pub events: Sender<Event>,
    pub source: Arc<str>,
    pub notifier: Option<Notifier>,
}

impl SighupReload {
    fn reload(&mut self) {
        let Some(reload) = self.reload.as_mut() else {
            tracing::info!("SIGHUP: nothing to reload in this mode");
            return;
        };
        if let Some(n) = &self.notifier {
            n.reloading();
        }
        // A hook that panics refuses the reload like one that fails: the set in force stays and
        // the signal thread lives on.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut *reload))
            .unwrap_or_else(|_| Err("the reload panicked".into()));
        let (kind, reason, after_seq, in_force, previous) = match attempt {
            Ok(new) => {
                let new = Arc::new(new);
                let id = new.id.clone();
                let (after_seq, previous) = self.scorer.swap(new);
                let previous = previous.id.clone();
                (
                    StatusKind::ReferencesReloaded,
                    None,
                    after_seq,
                    id,
                    previous,
                )
            }
            Err(e) => {
                let (after_seq, in_force) = self.scorer.position();
                let id = in_force.id.clone();
                let reason = Some(crate::error::chain(e.as_ref()));
                (StatusKind::ReloadRefused, reason, after_seq, id.clone(), id)
            }
        };
        if let Some(n) = &self.notifier {
            n.ready(&format!("{}: references {in_force}", kind.as_str()));
        }
        let event = StatusEvent {
            kind,
            source: self.source.clone(),
            at: SystemTime::now(),
            reason,
            after_seq,
            reference_set: Some(in_force),
            previous_reference_set: Some(previous),
        };
        // Closed only when the sequencer has ended: nobody is left to tell.
        let _ = self.events.send(Event::Status(event));
    }
}

pub(super) type SignalWatch = (signal_hook::iterator::Handle, JoinHandle<()>);

/// SIGINT, SIGTERM and SIGHUP handlers, installed but not yet served: a signal that arrives
/// before the pipeline runs (say, while the workers' sessions are created after the socket was
/// bound) is kept and handled as soon as it starts, so the process never dies of it by default
/// and always cleans up (the socket file).
pub struct SignalHandlers {
    signals: signal_hook::iterator::Signals,
    reload: Option<Reload>,
}

impl SignalHandlers {
    /// Installs the handlers now; `reload` answers SIGHUP once the pipeline runs.
    pub fn install(reload: Option<Reload>) -> Result<Self, PipelineError> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
            .map_err(PipelineError::Signals)?;
        Ok(Self { signals, reload })
    }
}

/// Serves the installed handlers on the `signals` thread; `hup` builds SIGHUP's handling around
/// the handlers' reload hook.
pub(super) fn watch(
    stop: &StopSignal,
    handlers: SignalHandlers,
    hup: impl FnOnce(Option<Reload>) -> SighupReload,
) -> Result<SignalWatch, PipelineError> {
    use signal_hook::consts::SIGHUP;
    let SignalHandlers {
        mut signals,
        reload,
    } = handlers;
    let mut hup = hup(reload);
    let handle = signals.handle();
    let stop = stop.clone();
    let thread = spawn("signals", move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                tracing::info!(signal, "SIGHUP: reloading references and scoring settings");
                hup.reload();
                continue;
            }
            if stop.is_raised() {
                tracing::warn!(signal, "second stop signal: exiting without draining");
                std::process::exit(130);
            }
            tracing::info!(
                signal,
                "stop signal: taking no new frames, draining those already taken"
            );
            stop.raise();
        }
    })?;
    Ok((handle, thread))
}
