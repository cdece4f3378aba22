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
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod chart;
pub mod etcd;
pub mod gate;
pub mod node_agent;
pub mod pki;
pub mod process;
pub mod tools;
pub mod user_cluster;

pub use apiserver::{ApiServer, ControlPlane, Identity};
pub use etcd::Etcd;
