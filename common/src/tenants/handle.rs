//! The live tenants of a running service: readers take a cheap snapshot per connection or
//! request; a reload (SIGHUP today, the deployer's registry later) swaps in a whole new set.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{OperatorTokens, TenantError, TenantSet};
use crate::shutdown::ShutdownSignal;

/// Outcome counters of reloads, for logs, metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reloads tried.
    pub attempts: u64,
    /// Reloads refused (the previous set stayed).
    pub failures: u64,
    /// Why the last refused reload was refused.
    pub last_error: Option<String>,
}

struct Inner {
    current: RwLock<Arc<TenantSet>>,
    generation: watch::Sender<u64>,
    status: watch::Sender<ReloadStatus>,
}

/// Shared access to the current [`TenantSet`]; clones see the same set.
#[derive(Clone)]
pub struct TenantsHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TenantsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantsHandle")
            .field("apps", &self.current().len())
            .field("generation", &self.generation())
            .finish()
    }
}

impl TenantsHandle {
    /// Starts with `set` at generation 0.
    pub fn new(set: TenantSet) -> Self {
        Self {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(set)),
                generation: watch::channel(0).0,
                status: watch::channel(ReloadStatus::default()).0,
            }),
        }
    }

    /// The current set. Hold the `Arc` for the length of a request, not of a connection, to
    /// see reloads.
    pub fn current(&self) -> Arc<TenantSet> {
        // A panic while holding the lock cannot leave a half-written Arc, so poison is harmless.
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Swaps in `set` and bumps the generation, waking subscribers.
    pub fn replace(&self, set: TenantSet) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        self.inner.generation.send_modify(|g| *g += 1);
    }

    /// The generation counter, bumped by each [`replace`](Self::replace): wake up on it to
    /// re-check open connections (e.g. close those of a revoked token).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// How many times the set was replaced.
    pub fn generation(&self) -> u64 {
        *self.inner.generation.borrow()
    }

    /// Outcomes of [`reload_from`](Self::reload_from) so far.
    pub fn reload_status(&self) -> watch::Receiver<ReloadStatus> {
        self.inner.status.subscribe()
    }

    /// Loads `path`, checks it with `validate` and swaps it in; on any error the current set
    /// stays. Returns the number of apps loaded.
    pub fn reload_from(
        &self,
        path: &Path,
        validate: &dyn Fn(&TenantSet) -> Result<(), String>,
    ) -> Result<usize, TenantError> {
        let result = TenantSet::load(path).and_then(|set| {
            validate(&set).map_err(TenantError::Rejected)?;
            let apps = set.len();
            self.replace(set);
            Ok(apps)
        });
        self.inner.status.send_modify(|s| {
            s.attempts += 1;
            if let Err(e) = &result {
                s.failures += 1;
                s.last_error = Some(e.to_string());
            }
        });
        result
    }
}

/// Reloads the tenants file `path` on every SIGHUP until `shutdown`. A file that fails to load
/// or that `validate` refuses is logged with the reason and the previous set stays.
///
/// Call inside a tokio runtime. The SIGHUP handler is installed before this returns, so a
/// SIGHUP sent afterwards never kills the process.
pub fn reload_on_sighup(
    handle: TenantsHandle,
    path: PathBuf,
    validate: impl Fn(&TenantSet) -> Result<(), String> + Send + Sync + 'static,
    mut shutdown: ShutdownSignal,
) -> JoinHandle<()> {
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; tenants will not be reloaded");
            return tokio::spawn(async {});
        }
    };
    let validate = Arc::new(validate);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.recv() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            let (handle, path, validate) = (handle.clone(), path.clone(), validate.clone());
            // Reading and hashing a file is blocking work.
            let outcome = tokio::task::spawn_blocking(move || {
                let result = handle.reload_from(&path, &*validate);
                (path, result)
            })
            .await;
            match outcome {
                Ok((path, Ok(apps))) => {
                    tracing::info!(path = %path.display(), apps, "tenants reloaded");
                }
                Ok((path, Err(e))) => {
                    tracing::error!(path = %path.display(), error = %e, "tenants reload refused, keeping the previous set");
                }
                Err(e) => tracing::error!(error = %e, "tenants reload task failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::Shutdown;
    use std::time::Duration;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("berth-common-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn names(handle: &TenantsHandle) -> Vec<String> {
        handle
            .current()
            .iter()
            .map(|t| t.name.to_string())
            .collect()
    }

    #[test]
    fn replace_bumps_generation() {
        let handle = TenantsHandle::new(TenantSet::empty());
        let mut rx = handle.subscribe();
        let before = handle.current();
        handle.replace(TenantSet::from_memcached_authfile("a:t").unwrap());
        assert_eq!(handle.generation(), 1);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert!(before.is_empty(), "old snapshots stay valid and unchanged");
        assert_eq!(handle.clone().current().len(), 1);
    }

    #[test]
    fn reload_from_keeps_the_old_set_on_errors() {
        let dir = TempDir::new("reload-from");
        let path = dir.0.join("tenants");
        std::fs::write(&path, "a:t\nb:t\n").unwrap();
        let handle = TenantsHandle::new(TenantSet::empty());
        let ok = |_: &TenantSet| Ok(());
        assert_eq!(handle.reload_from(&path, &ok).unwrap(), 2);

        std::fs::write(&path, "[[app]]\nname = \"c\"\nbogus = 1\n").unwrap();
        let err = handle.reload_from(&path, &ok).unwrap_err().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");

        std::fs::write(&path, "c:t\n").unwrap();
        let refuse = |set: &TenantSet| Err(format!("{} apps is too many", set.len()));
        let err = handle.reload_from(&path, &refuse).unwrap_err().to_string();
        assert_eq!(err, "tenants refused: 1 apps is too many");

        assert_eq!(names(&handle), ["a", "b"]);
        assert_eq!(handle.generation(), 1);
        let status = handle.reload_status().borrow().clone();
        assert_eq!((status.attempts, status.failures), (3, 2));
        assert_eq!(status.last_error.as_deref(), Some(err.as_str()));
    }

    fn send_sighup() {
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions; the SIGHUP
        // handler was installed synchronously by reload_on_sighup, so the default action
        // (terminating the test process) cannot run.
        let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
        assert_eq!(rc, 0, "kill failed");
    }

    #[tokio::test]
    async fn sighup_reloads_and_keeps_the_old_set_on_a_bad_file() {
        let dir = TempDir::new("sighup");
        let path = dir.0.join("tenants.toml");
        std::fs::write(&path, "[[app]]\nname = \"one\"\ntoken = \"t\"\n").unwrap();
        let handle = TenantsHandle::new(TenantSet::load(&path).unwrap());
        let shutdown = Shutdown::new();
        let task = reload_on_sighup(
            handle.clone(),
            path.clone(),
            |set: &TenantSet| match set.get("forbidden") {
                Some(_) => Err("app forbidden is not allowed here".to_owned()),
                None => Ok(()),
            },
            shutdown.signal(),
        );
        let mut status = handle.reload_status();
        let wait = |n: u64, status: &mut watch::Receiver<ReloadStatus>| {
            let mut status = status.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    status.wait_for(|s| s.attempts >= n),
                )
                .await
                .expect("no reload within 10s")
                .unwrap()
                .clone()
            }
        };

        // A good file is swapped in.
        std::fs::write(&path, "one:t\ntwo:t\n").unwrap();
        send_sighup();
        let s = wait(1, &mut status).await;
        assert_eq!(s.failures, 0);
        assert_eq!(names(&handle), ["one", "two"]);
        assert_eq!(handle.generation(), 1);

        // A broken file is refused and the previous set stays.
        std::fs::write(&path, "[[app]]\nname = \"three\"\nmax_cpu = \"lots\"\n").unwrap();
        send_sighup();
        let s = wait(2, &mut status).await;
        assert_eq!(s.failures, 1);
        let err = s.last_error.unwrap();
        assert!(
            err.contains("tenants.toml:3:11: invalid type: string \"lots\""),
            "{err}"
        );
        assert_eq!(names(&handle), ["one", "two"]);

        // So is a file the service's own check refuses.
        std::fs::write(&path, "forbidden:t\n").unwrap();
        send_sighup();
        let s = wait(3, &mut status).await;
        assert_eq!(s.failures, 2);
        assert!(s
            .last_error
            .unwrap()
            .contains("app forbidden is not allowed here"));
        assert_eq!(names(&handle), ["one", "two"]);
        assert_eq!(handle.generation(), 1);

        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}

/// The operator tokens a service accepts: those of its own config, and those that come with
/// its tenants (berthd's registry streams berthd's operator tokens; a tenants file may list
/// `operator_tokens` too), so one operator token works on every service that follows berthd.
#[derive(Clone, Debug, Default)]
pub struct Operators {
    fixed: OperatorTokens,
    tenants: Option<TenantsHandle>,
}

impl Operators {
    /// Only the configured tokens.
    pub fn fixed(fixed: OperatorTokens) -> Self {
        Operators {
            fixed,
            tenants: None,
        }
    }

    /// The configured tokens and those of `tenants`' current set.
    pub fn following(fixed: OperatorTokens, tenants: TenantsHandle) -> Self {
        Operators {
            fixed,
            tenants: Some(tenants),
        }
    }

    /// Whether `token` is an operator token; both lists are compared in constant time.
    pub fn verify(&self, token: &str) -> bool {
        let configured = self.fixed.verify(token);
        let streamed = self
            .tenants
            .as_ref()
            .is_some_and(|h| h.current().operators().verify(token));
        configured | streamed
    }

    /// True when no operator token is accepted at all (now).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many operator tokens are accepted now.
    pub fn len(&self) -> usize {
        self.fixed.len()
            + self
                .tenants
                .as_ref()
                .map_or(0, |h| h.current().operators().len())
    }
}
