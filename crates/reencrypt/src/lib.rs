//! `eargate reencrypt`: rewrites every stored object of the encrypted resources through the
//! API, so kube-apiserver stores each under the current encryption configuration (it
//! encrypts only on write). Decisions are pure functions in [`resolve`], [`policy`] and
//! [`summary`]; [`run`] does the I/O with one client, bounded concurrency and flat memory.
#![forbid(unsafe_code)]

pub mod policy;
pub mod resolve;
pub mod run;
pub mod summary;

pub use policy::RetryPolicy;
pub use resolve::{DiscoverySnapshot, ResolveError, Target};
pub use run::{client, discover, reencrypt, Error, Options, ProgressSink};
pub use summary::{Counts, Failure, ResourceSummary, Summary};
