//! Certificate rotation under load, laid out like a mounted Secret (the kubelet swaps a
//! `..data` symlink): new handshakes see the new pair within 10 s, no request fails, a
//! broken pair is refused and counted while the old one stays in use.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eargate_admission::dev_certs::DevCerts;
use eargate_admission::{PolicyReviewer, ServeConfig};
use eargate_testkit::admission::*;
use eargate_testkit::fixtures::{ClusterFixture, Review};
use eargate_testkit::secrets::{assert_no_key_material, pem_body};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

/// Writes a pair into a fresh timestamped directory and swaps `..data` to it atomically.
fn publish(dir: &Path, generation: u32, cert_pem: &str, key_pem: &str) {
    let target = format!("..2025_01_10_10_00_{generation:02}");
    let data = dir.join(&target);
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("tls.crt"), cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), key_pem).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&target, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).unwrap();
        }
    }
}

fn leaf_der(certs: &DevCerts) -> Vec<u8> {
    CertificateDer::from_pem_slice(certs.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Does one fresh handshake and returns the serving certificate the server presented.
async fn presented(addr: std::net::SocketAddr, cas: &[&DevCerts]) -> Vec<u8> {
    let pems: Vec<&[u8]> = cas.iter().map(|ca| ca.ca_cert_pem.as_bytes()).collect();
    let config = tls_client_config(&pems);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

async fn wait_for_leaf(
    addr: std::net::SocketAddr,
    cas: &[&DevCerts],
    want: &[u8],
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if presented(addr, cas).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "new handshakes still see the old certificate after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_no_failed_request_and_broken_pairs_refused() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let a = make_certs();
    let b = make_certs();
    let c = make_certs();
    publish(dir.path(), 1, &a.cert_pem, &a.key_pem);
    // The production poll interval (2 s), not a test shortcut.
    let config = ServeConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
    );
    let mut config = config;
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let running = eargate_admission::start(config, Arc::new(PolicyReviewer::default()))
        .await
        .unwrap();
    let addr = running.addr;
    let url = format!("https://localhost:{}/validate", addr.port());
    let metrics_url = format!("http://{}/metrics", running.metrics_addr.unwrap());
    let all_cas = [&a, &b, &c];
    assert_eq!(presented(addr, &all_cas).await, leaf_der(&a));

    // Load: keep-alive clients and new-connection clients, all trusting every CA.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let body = serde_json::to_vec(
        &Review::delete(&ClusterFixture::new("rotation").kubermatic().build())
            .user("u")
            .build(),
    )
    .unwrap();
    let cas: Vec<&str> = all_cas.iter().map(|c| c.ca_cert_pem.as_str()).collect();
    let mut workers = Vec::new();
    for i in 0..6 {
        let client = client(&cas, i % 2 == 0);
        let (stop, ok, failed, url, body) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            url.clone(),
            body.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let good = match result {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. A good new pair: picked up within 10 s.
    publish(dir.path(), 2, &b.cert_pem, &b.key_pem);
    let took = wait_for_leaf(addr, &all_cas, &leaf_der(&b), Duration::from_secs(10)).await;
    eprintln!("rotation picked up after {took:?}");

    // 2. A broken pair (C's certificate with B's key): refused, B stays.
    publish(dir.path(), 3, &c.cert_pem, &b.key_pem);
    // 3. Garbage: refused, B stays.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publish(dir.path(), 4, "not a certificate", "not a key");
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(presented(addr, &all_cas).await, leaf_der(&b));
    let readyz = client(&cas, true)
        .get(format!("https://localhost:{}/readyz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(readyz.status().as_u16(), 200);

    // 4. Fixed: C's own pair is installed.
    publish(dir.path(), 5, &c.cert_pem, &c.key_pem);
    wait_for_leaf(addr, &all_cas, &leaf_der(&c), Duration::from_secs(10)).await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let metrics = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"eargate_tls_certificate_reloads_total{outcome="success"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"eargate_tls_certificate_reloads_total{outcome="failure"} 2"#),
        "{metrics}"
    );
    let served = ok.load(Ordering::Relaxed);
    let failures = failed.load(Ordering::Relaxed);
    eprintln!("{served} requests during rotation, {failures} failed");
    assert_eq!(failures, 0, "requests failed during rotation");
    assert!(served > 100, "too little load to mean anything: {served}");

    // The refusal is logged by file name, never with contents.
    let text = logs().text();
    assert!(text.contains("refusing the new certificate pair"), "{text}");
    let secrets: Vec<String> = all_cas.iter().map(|c| pem_body(&c.key_pem)).collect();
    assert_no_key_material(&secrets, [("the logs", &text)]);
    running.begin_drain();
    running.wait().await.unwrap();
}
