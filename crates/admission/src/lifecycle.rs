//! Start and stop: load the certificate, bind both ports, reload the certificate in the
//! background, and the shutdown that loses no request: on SIGTERM readiness turns false
//! while the server keeps accepting for the shutdown delay (so that the endpoints can drop
//! the pod), then it drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eargate_runtime::AdminServer;

use crate::config::ServeConfig;
use crate::edge::router;
use crate::handler::{AppState, Reviewer};
use crate::metrics::Metrics;
use crate::tls::{self, CertReloader, CertStore, TlsError};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key could not be loaded.
    #[error("serving certificate: {0}")]
    Tls(#[from] TlsError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("admission server failed: {0}")]
    Io(#[from] std::io::Error),
    /// The server task panicked or was cancelled.
    #[error("admission server task failed")]
    Join,
}

/// A started server: its addresses and the means to drain it.
pub struct Running {
    /// The address the HTTPS server listens on (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The address of the admin port (`/metrics`, `/healthz`, `/readyz`), if served.
    pub metrics_addr: Option<SocketAddr>,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The certificate pair in use, swapped on reload.
    pub store: Arc<CertStore>,
    state: Arc<AppState>,
    handle: axum_server::Handle<SocketAddr>,
    shutdown_delay: Duration,
    drain_timeout: Duration,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    admin: Option<AdminServer>,
}

impl Running {
    /// What SIGTERM starts: readiness false at once while the server keeps accepting
    /// connections and answering requests for the shutdown delay, so that the endpoints
    /// can drop this pod before its port closes. Then the drain (see
    /// [`Running::begin_drain`]) and the wait for it. The delay ends early when
    /// `skip_delay` resolves (a second SIGTERM or Ctrl-C). Returns when the server stopped.
    pub async fn shutdown(self, skip_delay: impl Future<Output = ()>) -> Result<(), ServeError> {
        self.begin_shutdown();
        tokio::select! {
            _ = tokio::time::sleep(self.shutdown_delay) => {}
            _ = skip_delay => tracing::info!("shutdown delay cut short"),
        }
        self.begin_drain();
        self.wait().await
    }

    /// Readiness false; everything else goes on (new connections and requests are served).
    pub fn begin_shutdown(&self) {
        self.state.shutting_down.store(true, Ordering::Release);
        tracing::info!(
            delay_ms = self.shutdown_delay.as_millis() as u64,
            "shutting down: readiness false, still accepting until the shutdown delay is over"
        );
    }

    /// Readiness false, stop accepting, let in-flight requests finish (up to the drain
    /// timeout). Returns at once; `wait` returns when the drain is over.
    pub fn begin_drain(&self) {
        self.state.shutting_down.store(true, Ordering::Release);
        tracing::info!(
            timeout_s = self.drain_timeout.as_secs(),
            "draining: no new connections, in-flight requests finish"
        );
        self.handle.graceful_shutdown(Some(self.drain_timeout));
    }

    /// How long [`Running::shutdown`] keeps accepting before it drains.
    pub fn shutdown_delay(&self) -> Duration {
        self.shutdown_delay
    }

    /// Waits for the admission server to stop, then stops the metrics port and reloader.
    pub async fn wait(mut self) -> Result<(), ServeError> {
        let result = (&mut self.server).await;
        if let Some(admin) = self.admin.take() {
            if let Err(err) = admin.stop().await {
                tracing::error!(error = %err, "metrics server stopped");
            }
        }
        for task in self.background.drain(..) {
            task.abort();
        }
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(ServeError::Io(err)),
            Err(_) => Err(ServeError::Join),
        }
    }

    /// Number of open client connections on the admission port.
    pub fn connection_count(&self) -> usize {
        self.handle.connection_count()
    }
}

fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener, ServeError> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| ServeError::Bind { addr, source })?;
    Ok(listener)
}

/// Loads the certificate, binds both ports and starts serving in the background.
/// Must be called inside a tokio runtime.
pub async fn start(
    config: ServeConfig,
    reviewer: Arc<dyn Reviewer>,
) -> Result<Running, ServeError> {
    let provider = tls::provider();
    let (cert_pem, key_pem) = tls::read_files(&config.tls_cert_file, &config.tls_key_file)?;
    let pair = tls::parse_pair(
        &cert_pem,
        &key_pem,
        &config.tls_cert_file,
        &config.tls_key_file,
        &provider,
    )?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_cert_expiry(pair.not_after);
    let store = Arc::new(CertStore::new(&pair));
    let rustls_config = tls::server_config(store.clone(), provider.clone())?;

    let state = Arc::new(AppState {
        reviewer,
        metrics: metrics.clone(),
        store: store.clone(),
        shutting_down: AtomicBool::new(false),
        max_body_bytes: config.max_body_bytes,
        request_read_timeout: config.request_read_timeout,
    });

    let listener = bind_std(config.listen)?;
    let addr = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(rustls_config)),
    )?
    .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .header_read_timeout(Some(config.request_read_timeout));
    let app = router(state.clone());
    let server = tokio::spawn(async move { server.serve(app.into_make_service()).await });

    let mut background = Vec::new();
    let reloader = CertReloader::new(
        config.tls_cert_file.clone(),
        config.tls_key_file.clone(),
        store.clone(),
        metrics.clone(),
        provider,
        (cert_pem, key_pem),
    );
    background.push(tokio::spawn(reloader.run(config.cert_poll_interval)));

    // The same health and readiness as on the TLS port, in plain HTTP beside the metrics
    // (the reconciler's admin port answers alike), for probes and tools that speak no TLS.
    let admin = match config.metrics_listen {
        None => None,
        Some(maddr) => {
            let listener = tokio::net::TcpListener::from_std(bind_std(maddr)?)?;
            Some(AdminServer::serve(listener, state.clone())?)
        }
    };
    let metrics_addr = admin.as_ref().map(AdminServer::addr);

    tracing::info!(
        %addr,
        metrics = ?metrics_addr,
        cert = %config.tls_cert_file.display(),
        serial = %pair.serial,
        not_after = pair.not_after,
        max_body_bytes = config.max_body_bytes,
        "eargate admission server listening (TLS 1.2/1.3, h2 and http/1.1)"
    );
    Ok(Running {
        addr,
        metrics_addr,
        metrics,
        store,
        state,
        handle,
        shutdown_delay: config.shutdown_delay,
        drain_timeout: config.drain_timeout,
        server,
        background,
        admin,
    })
}

/// Replaces the default panic hook, which prints the payload (it could quote a request),
/// with a log line naming only where the panic happened.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, "panic");
    }));
}
