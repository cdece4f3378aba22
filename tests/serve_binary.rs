//! The real `eargate` binary: `eargate certs` makes the pair, `eargate serve` answers over
//! TLS, and SIGTERM shuts it down without losing a request: `/readyz` turns false while the
//! server keeps accepting for `--shutdown-delay`, then it drains (the listener closes, a
//! request in flight still completes) and the process exits 0. The captured logs carry no
//! key material.
#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eargate_testkit::admission::tls_client_config;
use eargate_testkit::cli;
use eargate_testkit::secrets::pem_body;

const EARGATE: &str = env!("CARGO_BIN_EXE_eargate");
/// `eargate serve`'s default `--shutdown-delay`.
const DEFAULT_DELAY: Duration = Duration::from_secs(5);
/// `eargate serve`'s drain timeout.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_client(ca_pem: &[u8], addr: SocketAddr) -> std::io::Result<Tls> {
    let mut config = tls_client_config(&[ca_pem]);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(15)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(15)))?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

/// Reads one HTTP/1.1 response (its length from `content-length`): the status and body.
fn read_response(stream: &mut impl Read) -> Result<(u16, Vec<u8>), String> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(at) = reply.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&reply[..at]).into_owned();
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no status line: {head:?}"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .ok_or_else(|| format!("no content-length: {head:?}"))?;
            if reply.len() >= at + 4 + len {
                return Ok((status, reply[at + 4..at + 4 + len].to_vec()));
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(format!("closed after {} bytes of the reply", reply.len())),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(format!("closed after {} bytes of the reply", reply.len()))
            }
            Err(e) => return Err(format!("reading the reply: {e}")),
        }
    }
}

/// Sends one request on `stream` and reads the reply.
fn exchange(stream: &mut (impl Read + Write), request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("sending: {e}"))?;
    read_response(stream)
}

fn review_request(body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut req = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
        body.len(),
        if keep_alive { "" } else { "connection: close\r\n" }
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

const READYZ: &[u8] = b"GET /readyz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";

/// A GET over a new TLS connection to the admission port.
fn get_tls(ca: &[u8], addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut tls = tls_client(ca, addr).map_err(|e| format!("connecting: {e}"))?;
    exchange(&mut tls, request).map(|(status, _)| status)
}

/// A GET over a new plain connection to the metrics port.
fn get_plain(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let mut tcp = TcpStream::connect(addr).map_err(|e| format!("connecting: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    exchange(&mut tcp, request).map(|(status, _)| status)
}

/// The review every test sends: removing the active key, denied with 403.
fn review_body() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/review-remove-active-key.json"
    ))
    .unwrap()
}

/// A review reply that kube-apiserver would take: 200 and the denial.
fn check_review_reply(status: u16, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status != 200 {
        return Err(format!("HTTP {status}: {text}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("reply is not JSON ({e}): {text}"))?;
    if v["kind"] != "AdmissionReview"
        || v["response"]["allowed"] != false
        || v["response"]["status"]["code"] != 403
    {
        return Err(format!("not the expected denial: {text}"));
    }
    Ok(())
}

/// `eargate certs` into `dir/certs`.
fn make_certs(dir: &Path) -> PathBuf {
    let certs = dir.join("certs");
    cli::certs(EARGATE, &certs);
    certs
}

/// A running `eargate serve` on ephemeral ports, its JSON log lines collected.
struct Served {
    child: Child,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    ca: Vec<u8>,
    logs: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Served {
    fn start(certs: &Path, extra: &[&str]) -> Served {
        let mut child = cli::serve_command(EARGATE, certs)
            .args(["--log-format", "json"])
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
        let reader = {
            let logs = logs.clone();
            let stderr = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let line = line.unwrap();
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        // The start line: `addr` and `metrics` (as `Some(<addr>)`).
                        if let (Some(addr), Some(metrics)) =
                            (v["addr"].as_str(), v["metrics"].as_str())
                        {
                            let metrics = metrics
                                .strip_prefix("Some(")
                                .and_then(|m| m.strip_suffix(')'))
                                .unwrap();
                            let _ = addr_tx.send((addr.parse().unwrap(), metrics.parse().unwrap()));
                        }
                    }
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            })
        };
        let (addr, metrics_addr) = match addr_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", logs.lock().unwrap());
            }
        };
        Served {
            child,
            addr,
            metrics_addr,
            ca: std::fs::read(certs.join("ca.crt")).unwrap(),
            logs,
            reader,
        }
    }

    fn signal(&self, name: &str) {
        cli::signal(&self.child, name);
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits for the exit (killing the process and failing after `limit`), then the logs.
    fn wait_exit(mut self, since: Instant, limit: Duration) -> (ExitStatus, String) {
        let status = loop {
            if let Some(status) = self.exit_status() {
                break status;
            }
            if since.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "did not exit within {limit:?}:\n{}",
                    self.logs.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.reader.join().unwrap();
        let logs = self.logs.lock().unwrap().clone();
        (status, logs)
    }
}

/// No key material in `logs`: neither the TLS keys nor any inline secretbox value of the
/// review (the example review names its keys by `secretRef`, so that part finds none).
fn assert_no_key_material(logs: &str, certs: &Path, review: &[u8]) {
    let review: serde_json::Value = serde_json::from_slice(review).unwrap();
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
        secrets.push(pem_body(&pem));
    }
    eargate_testkit::secrets::assert_no_key_material(&secrets, [("the logs", logs)]);
}

/// With `--shutdown-delay 0s`, SIGTERM drains at once: the listener closes, a request whose
/// body is half sent still completes, the process exits 0.
#[test]
fn sigterm_drains_the_request_in_flight_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let served = Served::start(&certs, &["--shutdown-delay", "0s"]);
    let addr = served.addr;

    // A request whose body is only half sent when SIGTERM arrives.
    let body = review_body();
    let mut tls = tls_client(&served.ca, addr).unwrap();
    let request = review_request(&body, true);
    let half = request.len() - body.len() / 2;
    tls.write_all(&request[..half]).unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    served.signal("TERM");
    // New connections stop: the listener closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if TcpStream::connect(addr).is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepting connections after SIGTERM with --shutdown-delay 0s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (status, reply) = exchange(&mut tls, &request[half..]).unwrap();
    check_review_reply(status, &reply).unwrap();
    drop(tls);

    let (status, logs) = served.wait_exit(started, DRAIN_TIMEOUT + Duration::from_secs(2));
    assert_eq!(status.code(), Some(0));
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(logs.contains("\"verdict\":\"denied\""), "{logs}");
    assert_no_key_material(&logs, &certs, &body);
}

/// How a client sends its reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Keep-alive: one connection, opened before SIGTERM, for as long as it lasts.
    Kept,
    /// A new TLS connection for every review.
    New,
}

#[derive(Debug)]
struct Sent {
    via: Via,
    /// Which connection of this client (`Kept`: 0 is the one opened before SIGTERM).
    connection: usize,
    started: Instant,
    ended: Instant,
    result: Result<(), String>,
}

/// Sends reviews until `stop`, recording every one.
fn keep_sending(
    via: Via,
    ca: Vec<u8>,
    addr: SocketAddr,
    body: Vec<u8>,
    stop: Arc<AtomicBool>,
    sent: Arc<Mutex<Vec<Sent>>>,
) {
    let mut kept: Option<Tls> = None;
    let mut connection = 0;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let result = (|| {
            let (status, reply) = match via {
                Via::Kept => {
                    if kept.is_none() {
                        kept = Some(tls_client(&ca, addr).map_err(|e| format!("connecting: {e}"))?);
                    }
                    exchange(kept.as_mut().unwrap(), &review_request(&body, true))?
                }
                Via::New => {
                    let mut tls = tls_client(&ca, addr).map_err(|e| format!("connecting: {e}"))?;
                    exchange(&mut tls, &review_request(&body, false))?
                }
            };
            check_review_reply(status, &reply)
        })();
        let failed = result.is_err();
        sent.lock().unwrap().push(Sent {
            via,
            connection,
            started,
            ended: Instant::now(),
            result,
        });
        if via == Via::New {
            connection += 1;
        } else if failed {
            kept = None;
            connection += 1;
        }
        std::thread::sleep(Duration::from_millis(if failed { 50 } else { 10 }));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    ReadyzTls,
    ReadyzMetrics,
    HealthzMetrics,
}

/// SIGTERM with the default shutdown delay: readiness turns false, while reviews over new
/// and existing TLS connections keep being answered until the delay is over; then the drain,
/// and exit 0.
#[test]
fn sigterm_keeps_serving_through_the_shutdown_delay_then_drains() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let mut served = Served::start(&certs, &[]);
    let body = review_body();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Vec::<Sent>::new()));
    let clients: Vec<_> = [Via::Kept, Via::New]
        .into_iter()
        .map(|via| {
            let (ca, addr, body) = (served.ca.clone(), served.addr, body.clone());
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || keep_sending(via, ca, addr, body, stop, sent))
        })
        .collect();
    // Both clients are under way, and ready before SIGTERM on both ports.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = |via| {
            let sent = sent.lock().unwrap();
            assert!(
                sent.iter().all(|s| s.result.is_ok()),
                "a review failed before SIGTERM: {sent:?}"
            );
            sent.iter().filter(|s| s.via == via).count()
        };
        if ok(Via::Kept) >= 3 && ok(Via::New) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the clients did not get going");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get_tls(&served.ca, served.addr, READYZ), Ok(200));
    assert_eq!(get_plain(served.metrics_addr, READYZ), Ok(200));
    assert_eq!(get_plain(served.metrics_addr, HEALTHZ), Ok(200));

    let sigterm = Instant::now();
    served.signal("TERM");
    // Probe health and readiness on both ports, each over a new connection, until exit.
    let mut probes: Vec<(Probe, Instant, Result<u16, String>)> = Vec::new();
    let limit = DEFAULT_DELAY + DRAIN_TIMEOUT + Duration::from_secs(15);
    let exited = loop {
        if served.exit_status().is_some() {
            break Instant::now();
        }
        assert!(
            sigterm.elapsed() < limit,
            "still running {limit:?} after SIGTERM:\n{}",
            served.logs.lock().unwrap()
        );
        let (ca, addr, maddr) = (&served.ca, served.addr, served.metrics_addr);
        probes.push((Probe::ReadyzTls, Instant::now(), get_tls(ca, addr, READYZ)));
        probes.push((
            Probe::ReadyzMetrics,
            Instant::now(),
            get_plain(maddr, READYZ),
        ));
        probes.push((
            Probe::HealthzMetrics,
            Instant::now(),
            get_plain(maddr, HEALTHZ),
        ));
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Release);
    for client in clients {
        client.join().unwrap();
    }
    let (status, logs) = served.wait_exit(sigterm, limit);
    assert_eq!(status.code(), Some(0), "{logs}");
    let delay_over = sigterm + DEFAULT_DELAY;

    // Not one review failed before the delay was over; a review that failed at all did
    // so after (when the drain closed the port).
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    for via in [Via::Kept, Via::New] {
        let of = |during: bool, ok: bool| {
            sent.iter()
                .filter(|s| s.via == via && s.started > sigterm && s.result.is_ok() == ok)
                .filter(|s| (s.started < delay_over) == during)
                .count()
        };
        eprintln!(
            "{via:?}: during the delay {} served, {} failed; after it {} served, {} failed",
            of(true, true),
            of(true, false),
            of(false, true),
            of(false, false)
        );
    }
    let early: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.result.is_err() && s.ended < delay_over)
        .collect();
    assert!(
        early.is_empty(),
        "reviews failed during the shutdown delay: {:#?}",
        early
            .iter()
            .map(|s| (s.via, s.ended.saturating_duration_since(sigterm), &s.result))
            .collect::<Vec<_>>()
    );

    assert!(
        exited >= delay_over,
        "exited {:?} after SIGTERM, before the delay was over",
        exited - sigterm
    );

    // Readiness turned false during the delay, on both ports, and stayed false.
    let first_unready = |probe: Probe| -> Instant {
        let seen: Vec<_> = probes.iter().filter(|p| p.0 == probe).collect();
        let at = seen
            .iter()
            .position(|p| p.2 == Ok(503))
            .unwrap_or_else(|| panic!("{probe:?} never answered 503: {seen:?}"));
        assert!(
            seen[at].1 < delay_over,
            "{probe:?}: readiness false only {:?} after SIGTERM",
            seen[at].1 - sigterm
        );
        assert!(
            seen[at..].iter().all(|p| p.2 != Ok(200)),
            "{probe:?}: ready again after 503: {seen:?}"
        );
        seen[at].1
    };
    let unready = first_unready(Probe::ReadyzTls).max(first_unready(Probe::ReadyzMetrics));
    // Both ports answered every probe until the delay was over; alive all along.
    for (probe, at, result) in &probes {
        assert!(
            result.is_ok() || *at >= delay_over,
            "{probe:?} failed {:?} after SIGTERM: {result:?}",
            *at - sigterm
        );
        if *probe == Probe::HealthzMetrics {
            assert!(result.is_err() || *result == Ok(200), "{result:?}");
        }
    }
    assert!(probes
        .iter()
        .any(|p| p.0 == Probe::HealthzMetrics && p.1 > unready && p.2 == Ok(200)));

    // While not ready, both clients were still served: the kept connection (the one opened
    // before SIGTERM) and new connections, up to the second half of the delay.
    for via in [Via::Kept, Via::New] {
        let served_after = |since: Instant| {
            sent.iter()
                .filter(|s| s.via == via && s.started > since && s.result.is_ok())
                .filter(|s| via == Via::New || s.connection == 0)
                .count()
        };
        assert!(
            served_after(unready) > 0,
            "{via:?}: none served after readiness went false"
        );
        assert!(
            served_after(sigterm + DEFAULT_DELAY / 2) > 0,
            "{via:?}: none served in the second half of the delay"
        );
    }

    let order: Vec<usize> = [
        "SIGTERM received",
        "shutting down: readiness false",
        "draining: no new connections",
        "drained; exiting",
    ]
    .iter()
    .map(|line| {
        logs.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{logs}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{logs}");
    let delay_ms = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        })
        .and_then(|v| v["delay_ms"].as_u64());
    assert_eq!(
        delay_ms,
        Some(DEFAULT_DELAY.as_millis() as u64),
        "the default delay"
    );
    assert_no_key_material(&logs, &certs, &body);
}

/// A second signal during the delay skips the rest of it (here: SIGINT during a delay of
/// ten minutes); reviews are still answered until then.
#[test]
fn a_second_signal_skips_the_rest_of_the_shutdown_delay() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path());
    let served = Served::start(&certs, &["--shutdown-delay", "10m"]);
    let body = review_body();

    let sigterm = Instant::now();
    served.signal("TERM");
    let deadline = sigterm + Duration::from_secs(20);
    while get_plain(served.metrics_addr, READYZ) != Ok(503) {
        assert!(
            Instant::now() < deadline,
            "readiness still true after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut tls = tls_client(&served.ca, served.addr).unwrap();
    let (status, reply) = exchange(&mut tls, &review_request(&body, false)).unwrap();
    check_review_reply(status, &reply).unwrap();
    drop(tls);

    served.signal("INT");
    let (status, logs) = served.wait_exit(sigterm, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{logs}");
    for line in [
        "SIGINT received",
        "shutdown delay cut short",
        "drained; exiting",
    ] {
        assert!(logs.contains(line), "no {line:?} in:\n{logs}");
    }
}
