//! `eargate serve` running locally as the chart's webhook Deployment would run it, and the
//! chart's webhook configurations pointed at it by URL.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::chart::find;
use crate::pki::Ca;
use crate::process::{starting, Server};
use crate::tools::free_port;

/// One running `eargate serve` with a serving certificate from its own CA.
pub struct Gate {
    server: Server,
    /// The name given at start, in its log's and CA's names.
    pub name: String,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The port it listens on.
    pub port: u16,
    ca: Ca,
    cert: PathBuf,
    key: PathBuf,
    dir: PathBuf,
}

impl Gate {
    /// Starts `eargate serve` with `args` (the chart's, see [`webhook_args`]) on a free
    /// loopback port, files in `dir/<name>/`, and waits until it logs that it listens.
    pub fn start(eargate: &Path, dir: &Path, name: &str, args: &[String]) -> Gate {
        let dir = dir.join(format!("gate-{name}"));
        std::fs::create_dir_all(&dir).expect("create the gate dir");
        let ca = Ca::new(&format!("eargate test webhook CA ({name})"));
        let (cert, key) = ca.server(&[]).write(&dir, "tls");
        let _starting = starting();
        let port = free_port();
        let mut all = vec![
            "serve".to_owned(),
            format!("--listen=127.0.0.1:{port}"),
            "--metrics-listen=127.0.0.1:0".to_owned(),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-key-file={}", key.display()),
        ];
        all.extend(args.iter().cloned());
        let mut server = Server::spawn(
            &format!("eargate serve ({name})"),
            eargate,
            &all,
            &dir.join("serve.log"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !server.log().contains("eargate admission server listening") {
            assert!(
                !server.exited() && Instant::now() < deadline,
                "eargate serve ({name}) did not start; its log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Gate {
            server,
            name: name.to_owned(),
            url: format!("https://127.0.0.1:{port}"),
            port,
            ca,
            cert,
            key,
            dir,
        }
    }

    /// The CA bundle (base64 PEM) for a webhook's `clientConfig`.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca.cert_pem)
    }

    /// Writes a new serving certificate from the same CA, each file replaced atomically.
    pub fn rotate_certificate(&self) {
        let pair = self.ca.server(&[]);
        for (text, path) in [(&pair.key_pem, &self.key), (&pair.cert_pem, &self.cert)] {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, text).expect("write the rotated file");
            std::fs::rename(&tmp, path).expect("replace the serving file");
        }
    }

    /// The server's log so far (JSON lines with `--log-format=json`).
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Where the gate's files and log are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server (SIGTERM) and waits until it has exited.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}

/// The arguments of the chart's webhook container, less the ones a local run sets itself
/// (listen addresses and certificate files).
pub fn webhook_args(objects: &[serde_json::Value]) -> Vec<String> {
    let deployment = find(objects, "Deployment", None)
        .into_iter()
        .find(|d| {
            d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook"
        })
        .expect("the chart renders a webhook Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the webhook container has args");
    let local = [
        "--listen",
        "--metrics-listen",
        "--tls-cert-file",
        "--tls-key-file",
    ];
    args.iter()
        .filter_map(|a| a.as_str())
        .filter(|a| *a != "serve")
        .filter(|a| !local.iter().any(|l| a.split('=').next() == Some(*l)))
        .map(str::to_owned)
        .collect()
}

/// The chart's Mutating- and ValidatingWebhookConfiguration with one change: each webhook's
/// `clientConfig` names `gate` by URL (same path) with the gate's CA as `caBundle`.
pub fn webhooks_pointed_at(objects: &[serde_json::Value], gate: &Gate) -> Vec<serde_json::Value> {
    let kinds = [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    let mut out = Vec::new();
    for kind in kinds {
        for config in find(objects, kind, None) {
            let mut config = config.clone();
            for hook in config["webhooks"].as_array_mut().expect("webhooks") {
                let path = hook["clientConfig"]["service"]["path"]
                    .as_str()
                    .expect("the chart's webhooks name a service path")
                    .to_owned();
                hook["clientConfig"] = serde_json::json!({
                    "url": format!("{}{path}", gate.url),
                    "caBundle": gate.ca_bundle(),
                });
            }
            out.push(config);
        }
    }
    assert_eq!(
        out.len(),
        2,
        "the chart renders both webhook configurations"
    );
    out
}
