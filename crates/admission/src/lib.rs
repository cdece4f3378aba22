//! The HTTPS admission server behind `eargate serve`: the endpoint kube-apiserver calls
//! for every change of a `Cluster`. It must be fast, strict about the protocol, and
//! impossible to crash from outside; the decisions themselves come from `eargate-policy`.
//!
//! [`config`](ServeConfig) says what to serve, the HTTP edge accepts or turns a request
//! away, the handler reviews what was accepted, and [`start`]/[`Running`] are the
//! lifecycle; the admin port (`/metrics`, `/healthz`, `/readyz`) is `eargate-runtime`'s.
#![forbid(unsafe_code)]

mod config;
pub mod dev_certs;
mod edge;
mod handler;
mod lifecycle;
mod metrics;
mod tls;

pub use config::{
    ServeConfig, DEFAULT_CERT_POLL_INTERVAL, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_READ_TIMEOUT, DEFAULT_SHUTDOWN_DELAY,
};
pub use handler::{PolicyReviewer, Reviewer};
pub use lifecycle::{install_panic_hook, start, Running, ServeError};
pub use metrics::Metrics;
pub use tls::{
    load_pair, provider as tls_provider, server_config as tls_server_config, CertStore, LoadedPair,
    TlsError,
};
