//! The real `eargate` binary: `eargate certs` makes the pair, `eargate serve` answers over
//! TLS, and SIGTERM drains: the listener closes, a request in flight still completes, the
//! process exits 0. The captured logs carry no key material.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");

fn tls_client(
    ca_pem: &[u8],
    addr: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn sigterm_drains_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = Command::new(EARGATE)
        .args(["certs", "--out-dir"])
        .arg(&certs)
        .args(["--dns-name", "localhost", "--ip", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(EARGATE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .arg("--tls-cert-file")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(certs.join("tls.key"))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let reader = {
        let logs = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if let Some(addr) = v["addr"].as_str() {
                        let _ = addr_tx.send(addr.parse().unwrap());
                    }
                }
                let mut l = logs.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let addr = match addr_rx.recv_timeout(Duration::from_secs(20)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            panic!("server did not start:\n{}", logs.lock().unwrap());
        }
    };
    let ca = std::fs::read(certs.join("ca.crt")).unwrap();

    // A request whose body is only half sent when SIGTERM arrives.
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/review-remove-active-key.json"
    ))
    .unwrap();
    let mut tls = tls_client(&ca, addr);
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).unwrap();
    let half = body.len() / 2;
    tls.write_all(&body[..half]).unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    // New connections stop: the listener closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpStream::connect(addr).is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    tls.write_all(&body[half..]).unwrap();
    tls.flush().unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                reply.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&reply);
                if let Some(at) = text.find("\r\n\r\n") {
                    let len: usize = text[..at]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    if reply.len() >= at + 4 + len {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the reply failed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let json = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["status"]["code"], 403);
    drop(tls);

    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(12) {
            let _ = child.kill();
            panic!("did not exit within the 10 s drain");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    reader.join().unwrap();
    let logs = logs.lock().unwrap().clone();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("\"verdict\":\"denied\""), "{logs}");

    // No key material: neither the TLS keys nor any secretbox value from the review.
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut secrets = Vec::new();
    for side in ["object", "oldObject"] {
        let keys = &review["request"][side]["spec"]["encryptionConfiguration"]["secretbox"]["keys"];
        for key in keys.as_array().into_iter().flatten() {
            if let Some(value) = key["value"].as_str() {
                secrets.push(value.to_string());
            }
        }
    }
    for file in ["tls.key", "ca.key"] {
        let pem = std::fs::read_to_string(certs.join(file)).unwrap();
        secrets.push(pem.lines().filter(|l| !l.starts_with("-----")).collect());
    }
    for secret in &secrets {
        let chars: Vec<char> = secret.chars().collect();
        for w in chars.windows(12.min(chars.len())) {
            let w: String = w.iter().collect();
            assert!(!logs.contains(&w), "key material in the logs");
        }
    }
}
