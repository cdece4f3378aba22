//! Leader election over a `coordination.k8s.io/v1` Lease (kube-lease-manager).
//!
//! Several replicas may run; only the holder of the Lease reconciles. The Lease lasts
//! [`LEASE_DURATION_SECONDS`] after each renewal and the holder renews [`LEASE_GRACE_SECONDS`]
//! before it runs out, so a standby takes over at most ~15 s after the leader dies (and
//! right after it releases the Lease on SIGTERM, once its last renewal has run out).
//!
//! Losing the Lease, or failing to renew it, stops the work at once: a reconciler that is
//! not sure it still leads must not write, or two replicas could roll the same cluster.

use std::future::Future;
use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How long a Lease stays valid after its last renewal.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// The holder renews this long before the Lease would run out.
pub const LEASE_GRACE_SECONDS: u64 = 5;
/// Wait before building a new lease manager after an API error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(2);

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity, written as the Lease's holder.
    pub identity: String,
    /// Lease validity after each renewal, in seconds.
    pub duration_seconds: u64,
    /// Renew this many seconds before the Lease runs out (must be below `duration_seconds`).
    pub grace_seconds: u64,
}

impl LeaderConfig {
    /// A Lease with the production timings ([`LEASE_DURATION_SECONDS`], [`LEASE_GRACE_SECONDS`]).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration_seconds: LEASE_DURATION_SECONDS,
            grace_seconds: LEASE_GRACE_SECONDS,
        }
    }
}

/// Why the election loop stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The grace is 0 or not below the duration.
    #[error("invalid Lease timing: grace ({grace}s) must be above 0 and below the duration ({duration}s)")]
    Timing {
        /// The Lease duration, in seconds.
        duration: u64,
        /// The renewal grace, in seconds.
        grace: u64,
    },
    /// The identity or the Lease name is empty.
    #[error("invalid Lease identity or name: must not be empty")]
    EmptyName,
    /// The Lease could not be released on the way out.
    #[error("releasing Lease {namespace}/{name}: {source}")]
    Release {
        /// The Lease's namespace.
        namespace: String,
        /// The Lease's name.
        name: String,
        /// Why the release failed.
        #[source]
        source: LeaseManagerError,
    },
}

/// How one term of leadership ended.
enum TermEnd {
    /// Shutdown was asked: the Lease has been released (or release was attempted).
    Shutdown,
    /// Leadership was lost or could not be confirmed: stand by again.
    Lost,
}

/// Runs `work` only while this replica holds the Lease, until `shutdown` resolves.
///
/// `work` is started anew each time leadership is gained and dropped (cancelled) when it is
/// lost. When `shutdown` resolves the Lease is released so a standby need not wait for it
/// to expire. If `work` itself returns, the Lease is released and the loop ends.
pub async fn run_with_leader_election<W, Fut>(
    client: Client,
    config: LeaderConfig,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
    mut work: W,
) -> Result<(), LeaderError>
where
    W: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    if config.grace_seconds == 0 || config.grace_seconds >= config.duration_seconds {
        return Err(LeaderError::Timing {
            duration: config.duration_seconds,
            grace: config.grace_seconds,
        });
    }
    if config.identity.is_empty() || config.name.is_empty() || config.namespace.is_empty() {
        return Err(LeaderError::EmptyName);
    }
    tokio::pin!(shutdown);
    loop {
        let manager = tokio::select! {
            built = build_manager(client.clone(), &config) => built,
            () = &mut shutdown => return Ok(()),
        };
        let manager = match manager {
            Ok(manager) => manager,
            Err(err) => {
                warn!(lease = %config.name, namespace = %config.namespace, error = %err, "cannot set up the leader Lease; retrying");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER_ERROR) => continue,
                    () = &mut shutdown => return Ok(()),
                }
            }
        };
        match one_term(&manager, &config, metrics, &mut shutdown, &mut work).await {
            Ok(TermEnd::Lost) => {
                metrics.set_leader(false);
                // A fresh manager next time: after an error this one may still think it
                // leads, and would never report a change.
                continue;
            }
            Ok(TermEnd::Shutdown) => {
                metrics.set_leader(false);
                return release(manager, &config).await;
            }
            Err(err) => {
                metrics.set_leader(false);
                warn!(lease = %config.name, error = %err, "leader election failed; standing by");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER_ERROR) => {}
                    () = &mut shutdown => return release(manager, &config).await,
                }
            }
        }
    }
}

async fn build_manager(
    client: Client,
    config: &LeaderConfig,
) -> Result<LeaseManager, LeaseManagerError> {
    LeaseManagerBuilder::new(client, config.name.clone())
        .with_namespace(config.namespace.clone())
        .with_identity(config.identity.clone())
        .with_field_manager(format!("eargate-{}", config.identity))
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .build()
        .await
}

/// Clears the Lease so a standby need not wait for it to run out.
///
/// kube-lease-manager 0.13 panics (`unreachable!`) when the release PATCH is answered 409
/// Conflict, i.e. someone else changed the Lease in between. The release runs in its own
/// task so that panic is caught: the Lease is then left to run out on its own, which is
/// what would happen if this process had died, and shutdown goes on.
async fn release(manager: LeaseManager, config: &LeaderConfig) -> Result<(), LeaderError> {
    match tokio::spawn(async move { manager.release().await }).await {
        Ok(Ok(())) => {
            info!(lease = %config.name, identity = %config.identity, "released the leader Lease");
            Ok(())
        }
        Ok(Err(source)) => Err(LeaderError::Release {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            source,
        }),
        Err(join) => {
            warn!(
                lease = %config.name,
                identity = %config.identity,
                expires_in_seconds = config.duration_seconds,
                panicked = join.is_panic(),
                "the Lease changed while it was being released; leaving it to run out"
            );
            Ok(())
        }
    }
}

/// Waits to become leader, then runs `work` until leadership is lost, `work` ends, or
/// shutdown is asked.
async fn one_term<W, Fut, S>(
    manager: &LeaseManager,
    config: &LeaderConfig,
    metrics: &Metrics,
    shutdown: &mut std::pin::Pin<&mut S>,
    work: &mut W,
) -> Result<TermEnd, LeaseManagerError>
where
    W: FnMut() -> Fut,
    Fut: Future<Output = ()>,
    S: Future<Output = ()>,
{
    // Stand by until the Lease is ours.
    loop {
        tokio::select! {
            changed = manager.changed() => {
                if changed? {
                    break;
                }
            }
            () = shutdown.as_mut() => return Ok(TermEnd::Shutdown),
        }
    }
    info!(lease = %config.name, identity = %config.identity, "acquired the leader Lease; reconciling");
    metrics.set_leader(true);
    let running = work();
    tokio::pin!(running);
    loop {
        tokio::select! {
            changed = manager.changed() => match changed {
                Ok(true) => {}
                Ok(false) => {
                    warn!(lease = %config.name, identity = %config.identity, "lost the leader Lease; stopping work");
                    return Ok(TermEnd::Lost);
                }
                Err(err) => {
                    warn!(lease = %config.name, error = %err, "cannot renew the leader Lease; stopping work");
                    return Ok(TermEnd::Lost);
                }
            },
            () = &mut running => return Ok(TermEnd::Shutdown),
            () = shutdown.as_mut() => return Ok(TermEnd::Shutdown),
        }
    }
}
