#![forbid(unsafe_code)]
//! Reading kube-apiserver's storage: the secretbox value format, where resources live in
//! etcd, and `eargate verify` — which objects (and older revisions) are sealed with which key.

pub mod classify;
pub mod etcd;
pub mod report;
pub mod resources;
pub mod secretbox;
pub mod verify;

pub use classify::{Keyring, Outcome, OutcomeKind};
/// The etcd client crate, re-exported so tests and callers use the same version.
pub use etcd_client;
pub use secretbox::SecretboxKey;
