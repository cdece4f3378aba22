//! The encryption policy: the Cluster model, every rule of a safe edit, the defaults the
//! mutating webhook fills, and the AdmissionReview codec. Pure code, no I/O: the admission
//! server, the reconciler and `eargate check` all call into this crate, so whatever the
//! webhook admits the reconciler can read.
#![forbid(unsafe_code)]

pub mod apiserver_config;
pub mod facts;
pub mod keys;
pub mod model;
pub mod names;
pub mod policy;
pub mod resources;
pub mod review;
pub mod rules;
mod scan;
pub mod status;

pub use facts::ClusterFacts;
pub use policy::{Decision, Operation, PolicyConfig, Violation, Warning};
pub use review::{review, ReviewError, ReviewSummary, Reviewed, Webhook};
