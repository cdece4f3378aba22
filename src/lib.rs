//! eargate: admission gate and reconciler for Kubernetes encryption at rest.
//!
//! The work lives in the member crates, one per part of the architecture:
//! - [`policy`]: the Cluster model, every rule of a safe edit, defaults, the review codec;
//! - [`admission`]: the HTTPS admission server (`eargate serve`);
//! - [`reconciler`]: renders the EncryptionConfiguration and rolls it out (`eargate reconcile`);
//! - [`reencrypt`]: rewrites stored objects through the API (`eargate reencrypt`);
//! - [`storage`]: kube-apiserver's storage format and etcd verification (`eargate verify`).
//!
//! This crate holds the command line that ties them together.
#![forbid(unsafe_code)]

pub use eargate_admission as admission;
pub use eargate_policy as policy;
pub use eargate_reconciler as reconciler;
pub use eargate_reencrypt as reencrypt;
pub use eargate_storage as storage;

pub mod cli;
