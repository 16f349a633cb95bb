//! What berthd hands the shim (`Spec`, read from `--spec FILE`) and what the shim hands back
//! (`State`, a JSON file rewritten atomically on every change).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Everything the shim needs to run one instance of one app version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// App name (e.g. `guestbook`).
    pub app: String,
    /// App version (semver).
    pub version: String,
    /// Instance name, e.g. `1.2.0-1`.
    pub instance: String,
    /// The command: `argv[0]` is looked up on the spec's `PATH` when it has no slash.
    pub argv: Vec<String>,
    /// The complete environment of the app (the shim's own is not passed on).
    pub env: BTreeMap<String, String>,
    /// Working directory (the bundle dir, read-only to the app).
    pub cwd: PathBuf,
    /// Run as this uid/gid (None: as the shim's own user).
    pub user: Option<UserSpec>,
    /// Emptied and re-created (owned by the app user, mode 0700) before every start.
    pub scratch_dir: PathBuf,
    /// Where the shim keeps its [`State`] (JSON, tmp file + rename).
    pub state_file: PathBuf,
    /// Resource limits.
    pub limits: Limits,
    /// Bubblewrap settings.
    pub sandbox: Sandbox,
    /// The log collector to ship stdout/stderr to (None: only to the shim's own stdout).
    pub log: Option<LogTarget>,
    /// Restart backoff.
    pub restart: RestartPolicy,
    /// On stop: SIGTERM, wait this long, then SIGKILL.
    pub stop_grace_ms: u64,
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// User id.
    pub uid: u32,
    /// Primary group id (supplementary groups are cleared).
    pub gid: u32,
}

/// Resource limits: rlimits for the app process, cgroup limits for the whole instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit of the cgroup, bytes.
    pub memory_bytes: Option<u64>,
    /// CPU limit of the cgroup, in cores (e.g. 0.5).
    pub cpu: Option<f64>,
    /// Maximum number of processes/threads in the cgroup.
    pub pids: Option<u64>,
    /// RLIMIT_NOFILE (soft and hard).
    pub nofile: Option<u64>,
    /// Parent cgroup, relative to the hierarchy root, e.g. `berth/guestbook`; the instance
    /// runs in `<cgroup_parent>/<instance>`. None: no cgroup.
    pub cgroup_parent: Option<String>,
}

/// Whether to run the app under bubblewrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Use bwrap when it is installed and works for the app's user, else run without.
    #[default]
    Auto,
    /// Require bwrap: the start fails (state `stopped`, reason in `sandbox`) without it.
    Always,
    /// Never use bwrap.
    Never,
}

/// Bubblewrap settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// auto, always or never.
    pub mode: SandboxMode,
    /// Paths covered by an empty tmpfs (e.g. berthd's data dir).
    pub hide: Vec<PathBuf>,
    /// Paths re-bound read-only (e.g. the bundle); the rest of `/` is read-only anyway.
    pub read_only: Vec<PathBuf>,
}

/// The log collector's JSON-lines endpoint and the app's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTarget {
    /// `host:port` of the collector's JSON-lines TCP source, e.g. `127.0.0.1:5170`.
    pub addr: String,
    /// The app's token.
    pub token: String,
}

/// Restart backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// First wait after a crash.
    pub initial_backoff_ms: u64,
    /// The wait doubles after each crash up to this.
    pub max_backoff_ms: u64,
    /// A child that ran at least this long resets the wait to the initial one.
    pub stable_after_ms: u64,
}

/// What the shim reports in its state file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The shim's pid.
    pub shim_pid: u32,
    /// The app process (or bwrap) pid, when one runs.
    pub child_pid: Option<u32>,
    /// `starting`, `running`, `backoff`, `stopping` or `stopped`.
    pub state: String,
    /// How many times the app was restarted.
    pub restarts: u32,
    /// How the last child ended: `exit 1`, `signal 9`, or `spawn failed: …`; when the shim
    /// could not start at all (state `stopped`), why.
    pub last_exit: Option<String>,
    /// Start of the current child, unix ms.
    pub started_ms: i64,
    /// When this state was written, unix ms.
    pub updated_ms: i64,
    /// `bwrap` or `none: <why>`.
    pub sandbox: String,
    /// The cgroup used (e.g. `/sys/fs/cgroup/memory/berth/guestbook/1.2.0-1` for v1, the v2
    /// dir for v2), None when none is used.
    pub cgroup: Option<String>,
    /// Why no cgroup (or only part of the limits) could be used; None when all went well.
    #[serde(default)]
    pub cgroup_error: Option<String>,
    /// Log lines acknowledged by the collector.
    pub log_shipped: u64,
    /// Log lines dropped (queue full while the collector was away).
    pub log_dropped: u64,
}

/// Reads a state file written by a shim.
pub fn read_state(path: &Path) -> io::Result<State> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes `state` to `path` atomically: a temp file beside it, fsync, rename.
pub fn write_state(path: &Path, state: &State) -> io::Result<()> {
    let bytes = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads and parses a spec file.
pub fn read_spec(path: &Path) -> io::Result<Spec> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Now, unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Now, unix seconds as a float (the log collector's `timestamp`).
pub fn now_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
