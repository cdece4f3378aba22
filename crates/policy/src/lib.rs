//! The encryption policy: the Cluster model, every rule of a safe edit, the defaults the
//! mutating webhook fills, and the AdmissionReview codec. Pure code, no I/O: the admission
//! server, the reconciler and `eargate check` all call into this crate, so whatever the
//! webhook admits the reconciler can read.
#![forbid(unsafe_code)]

// Public namespaces, whose items read best qualified:
// kube-apiserver's file format (`apiserver_config::Provider`),
pub mod apiserver_config;
// the Kubermatic API types (`model::Cluster`),
pub mod model;
// the names every part of eargate shares (`names::CLUSTER_KIND`),
pub mod names;
// the rule table (`rules::ALL`, `rules::EAR004`),
pub mod rules;
// a Cluster's status read one way (`status::phase(&cluster)`),
pub mod status;
// and the per-key summary a storage scan hands back (`storage_scan::KeySummary`).
pub mod storage_scan;

mod facts;
mod keys;
mod policy;
mod resources;
mod review;
mod scan;

pub use facts::ClusterFacts;
pub use keys::{decode_key, scrub_quoted, KeyError};
pub use policy::{
    validate, Decision, Operation, PolicyConfig, Request, RolloutBy, Violation, Warning,
};
pub use resources::{normalize_resources, validate_resources, Normalized, ResourceProblem};
pub use review::{
    decode, judge, review, review_detailed, DecodedRequest, DecodedReview, Detailed, GroupKind,
    ReviewError, ReviewSummary, Reviewed, Webhook,
};
