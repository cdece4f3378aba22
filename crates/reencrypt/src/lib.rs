//! `eargate reencrypt`: rewrites every stored object of the encrypted resources through the
//! API, so kube-apiserver stores each under the current encryption configuration (it
//! encrypts only on write).
//!
//! Decisions are pure functions: `resolve` (which resources the entries name), `verdict`
//! (what a response means), `retry` (when to try again) and `summary` (the report). The
//! I/O is `run` (client, discovery, one resource after another), `list` (pages in, each
//! object handed out once), `rewrite` (one object written back) and `api` (one request),
//! with one client, bounded concurrency and flat memory.
#![forbid(unsafe_code)]

mod api;
mod list;
mod resolve;
mod retry;
mod rewrite;
mod run;
mod summary;
mod verdict;

pub use resolve::{DiscoveredResource, DiscoverySnapshot, ResolveError, Target};
pub use retry::RetryPolicy;
pub use run::{client, discover, reencrypt, Error, Options, ProgressSink};
pub use summary::{Counts, Failure, ResourceSummary, Summary};
