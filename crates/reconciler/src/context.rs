//! What every reconcile shares: the client, the planner's settings, metrics, the Event
//! recorder, and the per-cluster error backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eargate_policy::names;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::metrics::Metrics;
use crate::model::{ReloadMode, ScanSettings, Settings};

/// First retry delay after an error; doubles per consecutive error of the same cluster.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Upper bound of the error backoff.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Look again this often even when nothing changes (resync).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Command-line configuration of `eargate reconcile` (mapped onto [`Settings`]).
#[derive(Clone, Debug)]
pub struct Config {
    /// `--job-image`: image of the re-encryption Job.
    pub job_image: String,
    /// `--apiserver-deployment`: the API server Deployment in each control-plane namespace.
    pub apiserver_deployment: String,
    /// `--config-secret`: the Secret holding the rendered EncryptionConfiguration.
    pub config_secret: String,
    /// `--admin-kubeconfig-secret`: the Secret with the user cluster's admin kubeconfig.
    pub admin_kubeconfig_secret: String,
    /// `--rollout-timeout`: how long a rollout or reload may take before `Failed`.
    pub rollout_timeout: Duration,
    /// How a new config reaches the API servers.
    pub reload: ReloadMode,
    /// Container of the API server Pods that serves the API.
    pub apiserver_container: String,
    /// Scrape every replica for the loaded config's hash.
    pub prove_loaded: bool,
    /// Where the storage scan finds the user clusters' etcd, and its rescan backoff.
    pub scan: ScanSettings,
    /// This replica's name: the Event reporting instance.
    pub identity: String,
}

impl Config {
    /// The planner's settings: these names, the rest at their defaults.
    pub fn settings(&self) -> Settings {
        Settings {
            job_image: self.job_image.clone(),
            rollout_timeout: self.rollout_timeout,
            apiserver_deployment: self.apiserver_deployment.clone(),
            config_secret: self.config_secret.clone(),
            admin_kubeconfig_secret: self.admin_kubeconfig_secret.clone(),
            reload: self.reload,
            apiserver_container: self.apiserver_container.clone(),
            prove_loaded: self.prove_loaded,
            scan: self.scan.clone(),
            ..Settings::default()
        }
    }
}

/// Shared state of the controller.
pub struct Context {
    /// The seed's API.
    pub client: Client,
    /// The planner's settings.
    pub settings: Settings,
    /// Metrics and readiness, served on the admin port.
    pub metrics: Arc<Metrics>,
    /// Publishes Events on Clusters, as this replica.
    pub recorder: Recorder,
    /// Consecutive errors per cluster name, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// The context of `eargate reconcile` from its command-line configuration.
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::with_settings(client, config.settings(), config.identity, metrics)
    }

    /// The context with explicit settings; `identity` names this replica in Events.
    pub fn with_settings(
        client: Client,
        settings: Settings,
        identity: String,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: names::RECONCILER_NAME.to_owned(),
            instance: Some(identity),
        };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            failures: Mutex::default(),
        })
    }

    /// Records one more consecutive error for `cluster` and returns how long to wait.
    pub(crate) fn next_backoff(&self, cluster: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(cluster.to_owned()).or_insert(0);
        let delay = backoff_delay(*n);
        *n = n.saturating_add(1);
        delay
    }

    /// A successful reconcile resets the backoff of `cluster`.
    pub(crate) fn reset_backoff(&self, cluster: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cluster);
    }
}

/// `BACKOFF_BASE * 2^failures`, capped at [`BACKOFF_MAX`].
pub(crate) fn backoff_delay(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_delay(0), Duration::from_secs(5));
        assert_eq!(backoff_delay(1), Duration::from_secs(10));
        assert_eq!(backoff_delay(3), Duration::from_secs(40));
        assert_eq!(backoff_delay(7), BACKOFF_MAX);
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_MAX);
    }
}

/// Why a reconcile stopped. Messages name objects and keys by name only; an API error that
/// concerns a Secret keeps its code and reason but drops the server's message, which could
/// echo submitted content.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the seed's API failed.
    #[error("{what}: {detail}")]
    Kube {
        /// What was being done ("reading Secret ns/name").
        what: String,
        /// The API's answer or the transport error, without key material.
        detail: String,
        /// The HTTP status, when the API answered.
        code: Option<u16>,
    },
    /// The planner is blocked by something outside its reach (e.g. a missing key Secret).
    #[error("blocked: {reason}")]
    Blocked {
        /// The condition reason the planner gave (`KeySecretMissing`, ...).
        reason: String,
    },
    /// An object could not be serialised for a write.
    #[error("encoding {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// Why it failed.
        detail: String,
    },
}

impl Error {
    /// An API error; the server's message is kept (no Secret content involved).
    pub(crate) fn kube(what: impl Into<String>, err: kube::Error) -> Self {
        let code = api_code(&err);
        let detail = match &err {
            kube::Error::Api(status) => {
                format!("HTTP {} {}: {}", status.code, status.reason, status.message)
            }
            other => other.to_string(),
        };
        Self::Kube {
            what: what.into(),
            detail,
            code,
        }
    }

    /// An API error about a Secret: only code and reason are kept.
    pub(crate) fn kube_secret(what: impl Into<String>, err: kube::Error) -> Self {
        let code = api_code(&err);
        let detail = match &err {
            kube::Error::Api(status) => format!("HTTP {} {}", status.code, status.reason),
            kube::Error::SerdeError(_) => "the API server's answer could not be decoded".to_owned(),
            other => other.to_string(),
        };
        Self::Kube {
            what: what.into(),
            detail,
            code,
        }
    }

    /// A short fixed kind for the error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube {
                code: Some(409), ..
            } => "conflict",
            Self::Kube {
                code: Some(404), ..
            } => "not_found",
            Self::Kube {
                code: Some(403), ..
            } => "forbidden",
            Self::Kube { .. } => "kube",
            Self::Blocked { .. } => "blocked",
            Self::Encode { .. } => "encode",
        }
    }
}

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
