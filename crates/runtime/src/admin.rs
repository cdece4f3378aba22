//! The plain-HTTP admin port of a long-running command: `GET /metrics` (OpenMetrics text),
//! `GET /healthz` (the process answers) and `GET /readyz` (it should get traffic or hold
//! the work). Kept off the serving port so that probes and Prometheus need no TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The `Content-Type` of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How long [`AdminServer::stop`] waits for requests in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What a command tells its admin port.
pub trait Probe: Send + Sync + 'static {
    /// The OpenMetrics text exposition of all metrics.
    fn metrics(&self) -> String;
    /// `Ok` when ready; otherwise a short reason, which `/readyz` answers with a 503.
    fn readiness(&self) -> Result<(), &'static str>;

    /// `/healthz` and `/readyz` for a router with this probe as its state, so that a
    /// serving port can answer them exactly like the admin port does.
    fn probe_routes() -> Router<Arc<Self>>
    where
        Self: Sized,
    {
        Router::new()
            .route("/healthz", get(|| async { plain(StatusCode::OK, "ok") }))
            .route("/readyz", get(readyz::<Self>))
    }
}

async fn readyz<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    match probe.readiness() {
        Ok(()) => plain(StatusCode::OK, "ready"),
        Err(reason) => plain(StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn metrics<P: Probe>(State(probe): State<Arc<P>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        probe.metrics(),
    )
        .into_response()
}

fn plain(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        format!("{text}\n"),
    )
        .into_response()
}

/// The admin routes over `probe`.
fn router<P: Probe>(probe: Arc<P>) -> Router {
    P::probe_routes()
        .route("/metrics", get(metrics::<P>))
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "not found: this port serves GET /metrics, GET /healthz, GET /readyz",
            )
        })
        .with_state(probe)
}

/// A running admin port; [`AdminServer::stop`] ends it.
pub struct AdminServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Binds `addr` and serves in the background. Must be called inside a tokio runtime.
    pub async fn start<P: Probe>(addr: SocketAddr, probe: Arc<P>) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Self::serve(listener, probe)
    }

    /// Serves on a bound listener (a caller that binds early to report errors, tests on
    /// port 0).
    pub fn serve<P: Probe>(
        listener: tokio::net::TcpListener,
        probe: Arc<P>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router(probe))
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(AdminServer {
            addr,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish (for up to [`STOP_GRACE`], so that a
    /// stuck scraper cannot hold the process), and returns how serving ended.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(STOP_GRACE, &mut self.task).await {
            Ok(Ok(result)) => result,
            Ok(Err(err)) => Err(std::io::Error::other(err)),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

impl Drop for AdminServer {
    /// A server that is dropped without [`AdminServer::stop`] (an error path of its
    /// command) must not outlive it.
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}
