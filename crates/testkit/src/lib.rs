//! eargate's shared test kit, a dev-dependency of every crate's tests.
//!
//! - [`tools`]: where the real binaries are (built by `scripts/build-control-plane.sh` into
//!   `.tools/bin`) and the "tool missing" policy: a failure under `EARGATE_REQUIRE_TOOLS=1`
//!   (what `make test` sets), a loud skip otherwise.
//! - [`pki`]: CAs and certificates from rcgen.
//! - [`process`]: a child process that dies with the test process, whatever ends it.
//! - [`etcd`]: a real etcd on loopback with a temporary data dir.
//! - [`apiserver`]: a real kube-apiserver on that etcd, with client-certificate identities,
//!   kubeconfig files, `kube::Client`s and `kubectl` for each.
//! - [`gate`]: `eargate serve` run with the chart's arguments, webhooks pointed at it.
//! - [`chart`]: the Helm chart rendered by the same Helm engine as the chart tests.
//! - [`user_cluster`]: a user cluster whose API server replicas are kube-apiserver processes
//!   on one etcd of their own, behind a Service address.
//! - [`node_agent`]: kubelet and kube-controller-manager stand-in for one control-plane
//!   namespace: rolls the user cluster's API servers and runs eargate's Jobs.
//! - [`rollout`]: the seed side of a rollout (chart installed, the reconciler process, a
//!   Cluster's control plane with its user cluster and node agent) and data to seed.
//! - [`journey`]: one hosted cluster driven by `eargate reconcile`: the Cluster applied,
//!   waits on its status, Events and metrics, and the key-material check over all of them.
//!
//! And for tests without a real control plane:
//! - [`admission`]: the admission server in process, TLS clients for it, and the checks
//!   kube-apiserver applies to a webhook reply.
//! - [`fixtures`]: builders for a `Cluster` and the AdmissionReview that carries it, and the
//!   files in `examples/`.
//! - [`cli`]: the `eargate` binary run as a user runs it.
//! - [`mock_api`]: a `kube::Client` whose API server is the test, asserting each request.
//! - [`sim`]: a simulated control plane that executes the reconciler's plans.
//! - [`logs`]: log capture for tests that assert on log lines.
//! - [`secrets`]: base64, and the one check that key material never shows.
//! - [`webhooks`]: the policy's two webhooks run in process on one edit.
#![forbid(unsafe_code)]
// Dev-only: like the tests it serves, a panic is how it reports a broken world.
#![allow(clippy::unwrap_used)]

pub mod admission;
pub mod apiserver;
pub mod chart;
pub mod cli;
pub mod etcd;
pub mod fixtures;
pub mod gate;
pub mod journey;
pub mod logs;
pub mod mock_api;
pub mod node_agent;
pub mod pki;
pub mod process;
pub mod rollout;
pub mod secrets;
pub mod sim;
pub mod tools;
pub mod user_cluster;
pub mod webhooks;

pub use apiserver::{ApiServer, ControlPlane, Identity};
pub use etcd::Etcd;
