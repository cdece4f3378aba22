//! SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C), heard the same way by every
//! long-running command.

use tokio_util::sync::CancellationToken;

/// Which signal asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, as Kubernetes sends to stop a pod.
    Terminate,
    /// SIGINT, as Ctrl-C sends.
    Interrupt,
}

/// Listens from creation on, so that a signal arriving while the command starts up is not
/// lost, and keeps listening, so that a second signal can be told from the first.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Must be called inside a tokio runtime.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves on the next SIGTERM or SIGINT, and logs which one it was.
    pub async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        let signal = tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
        };
        #[cfg(not(unix))]
        let signal = {
            // Without Unix signals only Ctrl-C can stop the process; if even that cannot be
            // listened for, never resolve rather than stop at once.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Signal::Interrupt
        };
        match signal {
            Signal::Terminate => tracing::info!("SIGTERM received"),
            Signal::Interrupt => tracing::info!("SIGINT received"),
        }
        signal
    }
}

/// Cancels `stop` on the first signal, from a task of its own. For a command that stops
/// everything through one token; the admission server, which treats a second signal
/// differently, calls [`Signals::recv`] itself.
pub fn cancel_on_signal(mut signals: Signals, stop: CancellationToken) {
    tokio::spawn(async move {
        tokio::select! {
            _ = signals.recv() => {
                tracing::info!("shutdown requested");
                stop.cancel();
            }
            () = stop.cancelled() => {}
        }
    });
}
