//! Bubblewrap: whether to use it (probed once per shim) and the command line around the app.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::spec::{SandboxMode, Spec, UserSpec};

/// The outcome of [`decide`].
#[derive(Debug, Clone)]
pub enum Decision {
    /// Run the app under this `bwrap` binary.
    Bwrap(PathBuf),
    /// Run the app directly; the reason goes into the state (`none: …`).
    None(String),
}

impl Decision {
    /// The state's `sandbox` text.
    pub fn describe(&self) -> String {
        match self {
            Decision::Bwrap(_) => "bwrap".to_string(),
            Decision::None(why) => format!("none: {why}"),
        }
    }
}

/// The environment variable that names the bwrap binary to use instead of a PATH lookup
/// (empty or not executable: as if bwrap were not installed).
pub const BWRAP_ENV: &str = "BERTH_BWRAP";

/// Looks `bwrap` up: `$BERTH_BWRAP` if set, else the shim's PATH, then /usr/bin and /bin.
pub fn find_bwrap() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(BWRAP_ENV) {
        let p = PathBuf::from(p);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join("bwrap"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `bwrap … true` as `user` with the namespaces the app gets; Err says why it failed.
pub fn probe(bwrap: &Path, user: Option<UserSpec>) -> Result<(), String> {
    let mut cmd = Command::new(bwrap);
    cmd.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
        .args(["--unshare-pid", "--unshare-ipc", "--unshare-uts"])
        .args(["--die-with-parent", "--new-session", "--", "true"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    super::child::drop_privileges(&mut cmd, user, None);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let who = user.map_or("the shim's user".to_string(), |u| format!("uid {}", u.uid));
                return Err(format!(
                    "bwrap does not work as {who} ({status}): {}",
                    err.trim()
                ));
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("bwrap probe timed out".into());
            }
            Err(e) => return Err(format!("waiting for the bwrap probe: {e}")),
        }
    }
}

/// Decides once per shim whether the app runs under bwrap. Err: mode `always` and bwrap is
/// missing or broken (the start fails).
pub fn decide(spec: &Spec) -> Result<Decision, String> {
    if spec.sandbox.mode == SandboxMode::Never {
        return Ok(Decision::None("sandbox mode never".into()));
    }
    let Some(bwrap) = find_bwrap() else {
        let why = "bwrap not found (Debian package bubblewrap)".to_string();
        return match spec.sandbox.mode {
            SandboxMode::Always => Err(format!("sandbox mode always: {why}")),
            _ => Ok(Decision::None(why)),
        };
    };
    match probe(&bwrap, spec.user) {
        Ok(()) => Ok(Decision::Bwrap(bwrap)),
        Err(why) if spec.sandbox.mode == SandboxMode::Always => {
            Err(format!("sandbox mode always: {why}"))
        }
        Err(why) => Ok(Decision::None(why)),
    }
}

/// The full command line under bwrap: `/` read-only, fresh /dev, /proc and /tmp, `hide`
/// covered by tmpfs, `read_only` and the cwd re-bound read-only, then the scratch dir bound
/// writable (last, so it wins even under a hidden or read-only path).
pub fn bwrap_argv(bwrap: &Path, spec: &Spec) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec![bwrap.into()];
    let mut push = |items: &[&std::ffi::OsStr]| a.extend(items.iter().map(|s| s.to_os_string()));
    push(&["--ro-bind".as_ref(), "/".as_ref(), "/".as_ref()]);
    push(&["--dev".as_ref(), "/dev".as_ref()]);
    push(&["--proc".as_ref(), "/proc".as_ref()]);
    push(&["--tmpfs".as_ref(), "/tmp".as_ref()]);
    // Paths that do not exist are left out (bwrap could not create them on a read-only /).
    for h in spec.sandbox.hide.iter().filter(|p| p.exists()) {
        push(&["--tmpfs".as_ref(), h.as_os_str()]);
    }
    let mut ro: Vec<&Path> = (spec.sandbox.read_only.iter())
        .filter(|p| p.exists())
        .map(PathBuf::as_path)
        .collect();
    if !ro.contains(&spec.cwd.as_path()) {
        ro.push(&spec.cwd);
    }
    for p in ro {
        push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]);
    }
    let s = spec.scratch_dir.as_os_str();
    push(&["--bind".as_ref(), s, s]);
    push(&[
        "--unshare-pid".as_ref(),
        "--unshare-ipc".as_ref(),
        "--unshare-uts".as_ref(),
    ]);
    push(&["--die-with-parent".as_ref(), "--new-session".as_ref()]);
    push(&["--chdir".as_ref(), spec.cwd.as_os_str(), "--".as_ref()]);
    a.extend(spec.argv.iter().map(OsString::from));
    a
}
