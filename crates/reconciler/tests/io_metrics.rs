//! The reconciler's metrics and readiness on the shared admin port, over real TCP.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::Arc;

use eargate_policy::model::EncryptionPhase;
use eargate_reconciler::Metrics;
use eargate_runtime::AdminServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn serves_metrics_health_and_readiness() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Arc::new(Metrics::new());
    let server = AdminServer::serve(listener, metrics.clone()).unwrap();

    assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
    metrics.set_ready(true);
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

    metrics.set_phase("c1", Some(EncryptionPhase::EncryptionNeeded));
    let body = get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("application/openmetrics-text"), "{body}");
    assert!(
        body.contains(r#"eargate_encryption_phase{cluster="c1",phase="EncryptionNeeded"} 1"#),
        "{body}"
    );
    assert!(body.contains("# EOF"), "{body}");
    assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

    server.stop().await.unwrap();
}
