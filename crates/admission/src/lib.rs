//! The HTTPS admission server behind `eargate serve`: the endpoint kube-apiserver calls
//! for every change of a `Cluster`. It must be fast, strict about the protocol, and
//! impossible to crash from outside; the decisions themselves come from `eargate-policy`.
#![forbid(unsafe_code)]

pub mod dev_certs;
pub mod metrics;
pub mod server;
pub mod tls;

pub use server::{
    install_panic_hook, start, PolicyReviewer, Reviewer, Running, ServeConfig, ServeError,
    DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_SHUTDOWN_DELAY,
};
