//! The changes themselves, one file per kind: [`deploy`] (checks, provisioning), [`rollout`]
//! (start, check, switch), [`watch`] (the watch window and its automatic rollback),
//! [`releases`] (promote, rollback), [`ops`] (scale, restart, config, status), [`lifecycle`]
//! (re-adoption, the monitor, destroy), [`oneoff`] (one-off commands). Here: what they share
//! (the per-app lock, release numbering, file-tree and text helpers).

use std::path::Path;

use berth_api::v1 as api;

use super::{say, Engine, Fail, Tx};
use crate::daemon::store::{ReleaseRecord, VersionRecord};

mod deploy;
mod lifecycle;
mod oneoff;
mod ops;
mod releases;
mod rollout;
mod watch;

/// How a change ended well.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A release went live.
    Released(ReleaseRecord),
    /// The same version with the same content and config is live already.
    Noop(ReleaseRecord),
    /// Checked but not promoted (`--no-promote`).
    Checked(Box<VersionRecord>),
    /// Done; nothing was released (e.g. config saved before the first deploy, a scale).
    Done(String),
}

/// Options of a rollout.
#[derive(Debug, Clone, Copy)]
struct Rollout {
    no_promote: bool,
    /// Keep the previous instances warm through the watch window (else: stop after drain).
    watch: bool,
    /// Use warm instances of the same version and config when there are some.
    reuse_warm: bool,
}

fn st<E: std::fmt::Display>(phase: &'static str) -> impl Fn(E) -> Fail {
    move |e| Fail::new(phase, e.to_string())
}

fn release_id(n: u64) -> String {
    format!("v{n}")
}

/// The message form of a release.
pub fn release_message(r: &ReleaseRecord) -> api::Release {
    api::Release {
        id: release_id(r.number),
        number: r.number,
        version: r.version.clone(),
        created_ms: r.created_ms,
        actor: r.actor.clone(),
        description: r.description.clone(),
        config_keys: r.config.plain.keys().cloned().collect(),
        secret_keys: r.config.secrets.keys().cloned().collect(),
        state: r.state.clone(),
        config_digest: r.config.digest(),
    }
}

impl Engine {
    fn live_release(&self, app: &str) -> Result<Option<ReleaseRecord>, Fail> {
        let run = self.state.run(app).map_err(st("state"))?;
        match run.live {
            Some(n) => self.state.release(app, n).map_err(st("state")),
            None => Ok(None),
        }
    }

    fn next_release_number(&self, app: &str) -> Result<u64, Fail> {
        Ok(self
            .state
            .releases(app)
            .map_err(st("state"))?
            .last()
            .map(|r| r.number + 1)
            .unwrap_or(1))
    }

    /// Runs `work` under the app's lock with its activity shown in `status`.
    async fn exclusive<T>(
        &self,
        app: &str,
        what: String,
        tx: &Tx,
        work: impl std::future::Future<Output = Result<T, Fail>>,
    ) -> Result<T, Fail> {
        let lock = self.lock_of(app);
        let guard = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                say(
                    tx,
                    "queue",
                    format!("waiting for {} to finish", self.activity(app)),
                );
                lock.lock().await
            }
        };
        self.set_activity(app, Some(what));
        let r = work.await;
        self.set_activity(app, None);
        drop(guard);
        r
    }
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_read_only(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        let meta = entry.metadata()?;
        if meta.is_dir() {
            make_read_only(&p)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o555))?;
        } else {
            let exec = meta.permissions().mode() & 0o100 != 0;
            std::fs::set_permissions(
                &p,
                std::fs::Permissions::from_mode(if exec { 0o555 } else { 0o444 }),
            )?;
        }
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
}

/// Removes the app's parent cgroups (`berth/<app>`, in every v1 hierarchy or in v2); the
/// shims removed their instances' groups.
fn remove_cgroups(app: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join("berth").join(app)];
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            dirs.push(e.path().join("berth").join(app));
        }
    }
    for d in dirs {
        if d.is_dir() {
            if let Err(e) = std::fs::remove_dir(&d) {
                tracing::warn!(app, dir = %d.display(), "removing the app's cgroup: {e}");
            }
        }
    }
}

/// Undoes [`make_read_only`] so the tree can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

fn short(digest: &str) -> &str {
    let d = digest.strip_prefix("sha256:").unwrap_or(digest);
    &d[..12.min(d.len())]
}

/// A failure in one line: the first line, and the last one when there are more (a
/// traceback's last line names the exception).
fn one_line(s: &str) -> String {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    match lines.next_back() {
        Some(last) => format!("{} {last}", first.trim_end_matches(':').to_string() + ":"),
        None => first.to_string(),
    }
}

fn with_reason(what: String, reason: &str) -> String {
    if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    }
}

/// "v3" -> 3.
pub fn parse_release(s: &str) -> Option<u64> {
    s.strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
}

/// Config keys: environment variable names for plain values (not BERTH_*), and the same or
/// lower-case identifiers for secrets.
pub fn check_key(k: &str, secret: bool) -> Result<(), String> {
    let ok_upper = !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    let ok_lower = !k.is_empty()
        && k.len() <= 128
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if k.starts_with("BERTH_") {
        return Err(format!("{k}: BERTH_* names belong to the platform"));
    }
    if secret {
        if ok_upper || ok_lower {
            return Ok(());
        }
        return Err(format!(
            "{k:?} is not a secret name: letters, digits and _, all lower or all upper case"
        ));
    }
    if ok_upper {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not an environment variable name: A-Z, 0-9 and _, not starting with a digit"
        ))
    }
}

fn log_tail(dir: &Path, lines: usize) -> String {
    let text = std::fs::read(dir.join("shim.log")).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let t = tail_lines(&text, lines);
    if t.trim().is_empty() {
        "(nothing)".into()
    } else {
        t
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_failure_in_one_line_keeps_the_exception() {
        assert_eq!(
            one_line("health: 3 checks failed"),
            "health: 3 checks failed"
        );
        assert_eq!(
            one_line(
                "the entry point main:app did not import (exit 1):\nTraceback (most recent call last):\n  File \"main.py\"\nRuntimeError: boom\n\n"
            ),
            "the entry point main:app did not import (exit 1): RuntimeError: boom"
        );
    }
}
