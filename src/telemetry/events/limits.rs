//! Bounds reached: a buffer, a batch, a relay budget or a principal's share of the
//! children cap. Each is counted in `switchboard_limits_total{limit}`.

use super::{Emit, Metrics};

/// Which bound was reached (the `limit` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A child's stderr line longer than the kept prefix: the rest was discarded.
    StderrLine,
    /// A batch with more items than `max_batch_items`, refused whole.
    BatchItems,
    /// A batch item answered with an error because the batch's answers reached
    /// `max_batch_answer_bytes` (one count per such item).
    BatchAnswers,
    /// A message a child sent before its response, dropped (a notification) or refused (a
    /// request) past the call's relay budget.
    RelayBudget,
    /// An `initialize` whose client capabilities are too large or too deep.
    Capabilities,
    /// A request refused (503) because its principal held its share of the children cap
    /// for the whole queue wait.
    PrincipalShare,
}

impl Limit {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StderrLine => "stderr_line",
            Self::BatchItems => "batch_items",
            Self::BatchAnswers => "batch_answers",
            Self::RelayBudget => "relay_budget",
            Self::Capabilities => "capabilities",
            Self::PrincipalShare => "principal_share",
        }
    }
}

/// A bound was reached.
#[derive(Debug, Clone, Copy)]
pub struct LimitHit(pub Limit);

impl Emit for LimitHit {
    fn emit(self, metrics: &Metrics) {
        tracing::debug!(limit = self.0.as_str(), "limit reached");
        metrics.limit_hit(self.0.as_str());
    }
}
