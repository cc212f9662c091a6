//! The replay summary: counts, latency quantiles and, with labels, the confusion matrix; written
//! to standard error when the run ends.

use std::sync::Arc;
use std::time::Instant;

use super::{Ready, Sink};
use crate::report::{Labels, Summary};
use crate::verdict::StatusEvent;

pub struct SummarySink {
    summary: Summary,
    labels: Option<Labels>,
    first_taken: Option<Instant>,
}

impl SummarySink {
    pub fn new(labels: Option<Labels>) -> Self {
        Self {
            summary: Summary::new(labels.as_ref()),
            labels,
            first_taken: None,
        }
    }
}

impl Sink for SummarySink {
    fn name(&self) -> &'static str {
        "summary"
    }

    fn verdict(&mut self, ready: &Ready<'_>) {
        self.first_taken.get_or_insert(ready.verdict.taken);
        self.summary
            .record(ready.verdict, ready.latency, self.labels.as_ref());
    }

    fn status(&mut self, _event: &StatusEvent, _line: &Arc<str>) {}

    fn finish(&mut self) {
        self.summary.elapsed = self.first_taken.map(|t| t.elapsed()).unwrap_or_default();
        crate::logging::eprint(&self.summary.to_string());
    }
}
