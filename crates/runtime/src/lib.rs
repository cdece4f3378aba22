//! What `eargate serve` and `eargate reconcile` share as long-running processes, so that
//! both behave alike for an operator: one log set-up (format, filter variable, escaping),
//! one way to hear SIGTERM and Ctrl-C, and one plain-HTTP admin port with `/metrics`,
//! `/healthz` and `/readyz`.
#![forbid(unsafe_code)]

mod admin;
mod log;
mod shutdown;

pub use admin::{AdminServer, Probe, METRICS_CONTENT_TYPE, STOP_GRACE};
pub use log::{
    init_logging, subscriber, LogFormat, LogGuard, LOG_FILTER_ENV, LOG_FILTER_FALLBACK_ENV,
};
pub use shutdown::{cancel_on_signal, Signal, Signals};
/// Re-exported so that callers hold the same token type the runtime cancels.
pub use tokio_util::sync::CancellationToken;
