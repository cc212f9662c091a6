//! Log set-up: `tracing` events to stderr as text or JSON, or to the journal under systemd.
//!
//! Under systemd (`JOURNAL_STREAM` names stderr) events go to journald over its native
//! protocol: `PRIORITY=` from the level, every event field as a journal field (`F_SEQ=`,
//! `F_REFERENCE_SET=`, …), `SYSLOG_IDENTIFIER=inspectord`. If the journal socket cannot be
//! reached, stderr lines get sd-daemon(3) `<N>` priority prefixes, which journald turns into
//! priorities.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::service;

/// Installs the global subscriber. `Auto` = `Journal` when stderr is the journal, else `Text`.
pub fn init(filter: &str, format: LogFormat, ansi: bool) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|e| {
            eprintln!("inspectord: bad log filter {filter:?} ({e}); using `info`");
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
            .with_writer(std::io::stderr)
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
