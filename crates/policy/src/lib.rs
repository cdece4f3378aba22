//! The encryption policy: the Cluster model, every rule of a safe edit, the defaults the
//! mutating webhook fills, and the AdmissionReview codec. Pure code, no I/O: the admission
//! server, the reconciler and `eargate check` all call into this crate, so whatever the
//! webhook admits the reconciler can read.
#![forbid(unsafe_code)]

pub mod apiserver_config;
pub mod model;
pub mod names;
