//! Graceful shutdown: one `watch` channel flipped once (by SIGTERM/SIGINT or by code), observed
//! by the accept loop and by every connection so in-flight work can finish before exit.

use std::sync::{Arc, Weak};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// The trigger side of a shutdown. Clones share one channel; dropping the last clone counts as
/// a trigger for every [`ShutdownSignal`], so a forgotten owner cannot leave tasks hanging.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A shutdown that has not been triggered yet.
    pub fn new() -> Self {
        let (tx, _rx) = watch::channel(false);
        Self { tx: Arc::new(tx) }
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A receiver for tasks that must stop when the shutdown starts.
    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Triggers the shutdown on SIGTERM or SIGINT. Must be called inside a tokio runtime.
    ///
    /// The handlers are installed before this returns, so a signal sent right afterwards is
    /// never lost to the default action (process exit). A second SIGTERM/SIGINT after the first
    /// exits the process at once with status 1: the operator's way out of a slow drain.
    pub fn listen_os_signals(&self) {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot install SIGTERM/SIGINT handlers; only an explicit trigger will stop this process");
                return;
            }
        };
        // A weak reference, so this task does not keep the channel open after the owner is gone.
        let weak: Weak<watch::Sender<bool>> = Arc::downgrade(&self.tx);
        let mut owner_gone = self.tx.subscribe();
        tokio::spawn(async move {
            let mut signalled = false;
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                    // Err means every Shutdown was dropped: nothing left to trigger.
                    res = owner_gone.changed() => {
                        if res.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                if signalled {
                    tracing::warn!(signal = name, "second signal during shutdown, exiting now");
                    std::process::exit(1);
                }
                tracing::info!(signal = name, "shutting down");
                signalled = true;
                match weak.upgrade() {
                    Some(tx) => {
                        tx.send_replace(true);
                    }
                    None => return,
                }
            }
        });
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// The observing side of a [`Shutdown`]; cheap to clone, one per task.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl ShutdownSignal {
    /// Resolves once the shutdown is triggered: at once if it already was, and also when the
    /// [`Shutdown`] was dropped. Cancel-safe, so it can sit in a `select!` loop.
    pub async fn recv(&mut self) {
        // An Err means the sender is gone, which counts as a shutdown.
        let _ = self.rx.wait_for(|triggered| *triggered).await;
    }

    /// Whether the shutdown has started (or its [`Shutdown`] was dropped).
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_wakes_waiters_and_later_receivers() {
        let shutdown = Shutdown::new();
        let mut early = shutdown.signal();
        assert!(!early.is_triggered());
        let waiter = tokio::spawn(async move { early.recv().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();

        let mut late = shutdown.signal();
        assert!(late.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), late.recv())
            .await
            .unwrap();
        // Receiving twice is fine: the state stays triggered.
        tokio::time::timeout(Duration::from_secs(5), late.recv())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn dropping_the_owner_counts_as_trigger() {
        let shutdown = Shutdown::new();
        let mut sig = shutdown.signal();
        let copy = shutdown.clone();
        drop(shutdown);
        assert!(!sig.is_triggered(), "a clone still owns the channel");
        drop(copy);
        assert!(sig.is_triggered());
        tokio::time::timeout(Duration::from_secs(5), sig.recv())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn os_signal_triggers_shutdown() {
        let shutdown = Shutdown::new();
        shutdown.listen_os_signals();
        let mut sig = shutdown.signal();
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions; the SIGINT handler
        // was installed synchronously by listen_os_signals above, so the default action
        // (terminating the test process) cannot run.
        let rc = unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
        assert_eq!(rc, 0);
        tokio::time::timeout(Duration::from_secs(5), sig.recv())
            .await
            .unwrap();
        assert!(sig.is_triggered());
    }
}
