//! Log set-up: `tracing` events to stderr as text or JSON, or to the journal under systemd.
//!
//! Under systemd (`JOURNAL_STREAM` names stderr) events go to journald over its native
//! protocol: `PRIORITY=` from the level, every event field as a journal field (`F_SEQ=`,
//! `F_REFERENCE_SET=`, …), `SYSLOG_IDENTIFIER=inspectord`. If the journal socket cannot be
//! reached, stderr lines get sd-daemon(3) `<N>` priority prefixes, which journald turns into
//! priorities.
//!
//! Logging never takes the daemon down: every write to stderr goes through [`LossyStderr`],
//! which ignores write errors (a closed pipe, a full disk behind a redirect) and counts the
//! lines lost; `main` reports the count at exit if stderr works again ([`report_lost`]).

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::service;

/// Log lines (and other stderr messages) that could not be written.
static LOST: AtomicU64 = AtomicU64::new(0);

/// Stderr that never fails: a write that does not go through is counted in [`lost`] and
/// otherwise ignored, so a broken stderr cannot panic or stop the daemon.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if err.write_all(buf).and_then(|()| err.flush()).is_err() {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `text` to stderr in one write, never failing (see [`LossyStderr`]).
pub fn eprint(text: &str) {
    let _ = LossyStderr.write(text.as_bytes());
}

/// How many log lines and messages could not be written to stderr so far.
pub fn lost() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// At exit: says how many lines were lost, if any and if stderr takes it now.
pub fn report_lost() {
    let lost = lost();
    if lost > 0 {
        let line = format!("inspectord: {lost} log lines could not be written to stderr\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// Installs the global subscriber. `Auto` = `Journal` when stderr is the journal, else `Text`.
pub fn init(filter: &str, format: LogFormat, ansi: bool) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
            eprint(&format!(
                "inspectord: bad log filter {filter:?} ({e}); using `info`\n"
            ));
            tracing_subscriber::EnvFilter::new("info")
        })
    };
    let format = match format {
        LogFormat::Auto if service::stderr_is_journal() => LogFormat::Journal,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    };
    let stderr = || {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(ansi && format == LogFormat::Text)
            .with_writer(|| LossyStderr)
    };
    match format {
        LogFormat::Auto | LogFormat::Text => stderr().init(),
        LogFormat::Json => stderr().json().init(),
        LogFormat::Journal => match tracing_journald::layer() {
            Ok(layer) => {
                let mut priorities = tracing_journald::PriorityMappings::new();
                // syslog's usual reading: info is informational, not notice.
                priorities.info = tracing_journald::Priority::Informational;
                priorities.debug = tracing_journald::Priority::Debug;
                let layer = layer
                    .with_syslog_identifier("inspectord".into())
                    .with_priority_mappings(priorities);
                tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .init();
            }
            Err(e) => {
                stderr()
                    .event_format(Prefixed(
                        tracing_subscriber::fmt::format()
                            .without_time() // the journal stamps every line
                            .with_ansi(false),
                    ))
                    .init();
                tracing::debug!(error = %e, "journal socket unreachable; priority-prefixed stderr");
            }
        },
    }
}

/// Writes sd-daemon(3) `<N>` priority prefixes before each event.
struct Prefixed<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prefixed<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(
            writer,
            "<{}>",
            service::syslog_priority(event.metadata().level())
        )?;
        self.0.format_event(ctx, writer, event)
    }
}
