//! What `eargate serve` is told: addresses, certificate files, limits and the timing of
//! the shutdown, with the defaults the chart relies on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default `--max-body-bytes`: room for an old and a new object of 3 MiB each plus the
/// review around them (etcd's default request limit is 1.5 MiB per object).
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How often the certificate files are re-read.
pub const DEFAULT_CERT_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long in-flight requests may run once the drain has begun (the listener is closed).
/// The chart's `terminationGracePeriodSeconds` must cover the shutdown delay plus this.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server keeps accepting after SIGTERM, readiness false, before it drains:
/// time for the endpoints to drop the pod, so that no client is sent to a closed port.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
/// How long a client may take to send a request's headers, and then its body: what
/// kube-apiserver waits for a webhook by default (the chart sets 5 s), so no real caller is
/// cut off, while a client that trickles bytes cannot hold a connection and its buffers.
pub const DEFAULT_REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `eargate serve` is told on the command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The HTTPS address kube-apiserver calls.
    pub listen: SocketAddr,
    /// Plain-HTTP `/metrics`; `None` serves no metrics port.
    pub metrics_listen: Option<SocketAddr>,
    /// The serving certificate (PEM), reloaded when it changes.
    pub tls_cert_file: PathBuf,
    /// Its private key (PEM), reloaded with it.
    pub tls_key_file: PathBuf,
    /// Largest review body accepted; a larger one gets 413.
    pub max_body_bytes: usize,
    /// How often the certificate files are checked for a change.
    pub cert_poll_interval: Duration,
    /// After SIGTERM: readiness false, still accepting, for this long; then the drain.
    pub shutdown_delay: Duration,
    /// How long requests in flight may take to finish once the drain begins.
    pub drain_timeout: Duration,
    /// Limit on reading a request's headers, and separately its body (HTTP/1.1 headers:
    /// the connection is closed; a body: 408).
    pub request_read_timeout: Duration,
}

impl ServeConfig {
    /// The defaults for everything but the address and the certificate files.
    pub fn new(listen: SocketAddr, tls_cert_file: PathBuf, tls_key_file: PathBuf) -> Self {
        ServeConfig {
            listen,
            metrics_listen: None,
            tls_cert_file,
            tls_key_file,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            cert_poll_interval: DEFAULT_CERT_POLL_INTERVAL,
            shutdown_delay: DEFAULT_SHUTDOWN_DELAY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            request_read_timeout: DEFAULT_REQUEST_READ_TIMEOUT,
        }
    }
}
