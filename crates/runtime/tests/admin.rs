//! The admin port over real TCP: the three routes, readiness following the probe, and a
//! stop that ends the server.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use eargate_runtime::{AdminServer, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Default)]
struct Flag(AtomicBool);

impl Probe for Flag {
    fn metrics(&self) -> String {
        "# TYPE eargate_test counter\neargate_test_total 3\n# EOF\n".into()
    }
    fn readiness(&self) -> Result<(), &'static str> {
        if self.0.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("still starting")
        }
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn answers_health_readiness_and_metrics_then_stops() {
    let probe = Arc::new(Flag::default());
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), probe.clone())
        .await
        .unwrap();
    let addr = admin.addr();
    assert_ne!(addr.port(), 0);

    let health = get(addr, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("\r\n\r\nok\n"), "{health}");

    let not_ready = get(addr, "/readyz").await;
    assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
    assert!(not_ready.ends_with("still starting\n"), "{not_ready}");
    probe.0.store(true, Ordering::Relaxed);
    let ready = get(addr, "/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.ends_with("ready\n"), "{ready}");

    let metrics = get(addr, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("eargate_test_total 3\n# EOF\n"),
        "{metrics}"
    );

    let other = get(addr, "/mutate").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    assert!(
        other.contains("GET /metrics, GET /healthz, GET /readyz"),
        "{other}"
    );

    admin.stop().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_taken_port_is_an_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = AdminServer::start(addr, Arc::new(Flag::default()))
        .await
        .err()
        .expect("the port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

/// A client that sends half a request cannot hold the stop for longer than its grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_cannot_hold_the_stop() {
    let admin = AdminServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(Flag::default()))
        .await
        .unwrap();
    let mut stuck = tokio::net::TcpStream::connect(admin.addr()).await.unwrap();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let limit = eargate_runtime::STOP_GRACE + std::time::Duration::from_secs(2);
    tokio::time::timeout(limit, admin.stop())
        .await
        .expect("the stop ends within its grace")
        .unwrap();
}
