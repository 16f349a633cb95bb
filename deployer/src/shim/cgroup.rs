//! The instance's cgroup: v1 (separate `memory`, `cpu`, `pids` hierarchies) or v2 (one
//! unified tree). The shim moves itself in before spawning, so the app inherits it.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::procs;
use super::spec::Limits;

const ROOT: &str = "/sys/fs/cgroup";
const V1_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];
const CPU_PERIOD_US: u64 = 100_000;

/// A cgroup the shim is in (one dir per v1 hierarchy, or one v2 dir).
#[derive(Debug)]
pub struct Cgroup {
    /// The dirs created (v1: memory, cpu, pids as available; v2: one).
    dirs: Vec<PathBuf>,
    /// Where the shim was before, per dir (to move back before removing).
    previous: Vec<Option<PathBuf>>,
}

impl Cgroup {
    /// The path reported in the state: the memory dir on v1, the dir on v2.
    pub fn path(&self) -> String {
        self.dirs
            .first()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    }

    /// SIGKILLs every process in the cgroup but the shim.
    pub fn kill_others(&self) {
        let me = std::process::id() as i32;
        for dir in &self.dirs {
            for pid in procs_in(dir) {
                if pid != me {
                    procs::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Kills what is left, moves the shim back where it was and removes the dirs (retrying
    /// briefly while the last tasks exit). Returns the first error, if any.
    pub fn remove(&self) -> Result<(), String> {
        let me = std::process::id().to_string();
        for (dir, prev) in self.dirs.iter().zip(&self.previous) {
            // Back where it was; if that fails (v2: it has children with controllers now),
            // to the hierarchy's root, which takes processes in any case.
            let root = hierarchy_root(dir);
            let moved = prev
                .as_ref()
                .is_some_and(|p| fs::write(p.join("cgroup.procs"), &me).is_ok());
            if !moved {
                let _ = fs::write(root.join("cgroup.procs"), &me);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut first_err = None;
        for dir in &self.dirs {
            loop {
                self.kill_others();
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => {
                        first_err.get_or_insert(format!("removing {}: {e}", dir.display()));
                        break;
                    }
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// The hierarchy root a dir belongs to (the mount point under /sys/fs/cgroup).
fn hierarchy_root(dir: &Path) -> PathBuf {
    let root = Path::new(ROOT);
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        return root.to_path_buf();
    }
    match dir
        .strip_prefix(root)
        .ok()
        .and_then(|r| r.components().next())
    {
        Some(c) => root.join(c),
        None => root.to_path_buf(),
    }
}

/// SIGKILLs what a previous shim of the same instance left in the group (after a kill -9 of
/// that shim, the app's own children can outlive it).
fn kill_stale(dir: &Path) {
    let me = std::process::id() as i32;
    for pid in procs_in(dir) {
        if pid != me {
            procs::kill(pid, libc::SIGKILL);
        }
    }
}

fn procs_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Checks that a relative cgroup path has only normal components.
fn relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path.trim_matches('/'));
    if p.as_os_str().is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("invalid cgroup path {path:?}"));
    }
    Ok(p.to_path_buf())
}

/// Where the shim is now in the hierarchy named `controller` (v1) or the unified one
/// (`controller` = ""), from /proc/self/cgroup.
fn current(controller: &str) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        if hit {
            let base = if controller.is_empty() {
                PathBuf::from(ROOT)
            } else {
                Path::new(ROOT).join(controller)
            };
            return Some(base.join(path.trim_start_matches('/')));
        }
    }
    None
}

/// Creates `<parent>/<instance>`, applies the limits and moves the shim into it.
/// Returns the cgroup (None if nothing could be used) and what went wrong, if anything.
pub fn setup(parent: &str, instance: &str, limits: &Limits) -> (Option<Cgroup>, Option<String>) {
    let rel = match relative(parent).and_then(|p| Ok(p.join(relative(instance)?))) {
        Ok(r) => r,
        Err(e) => return (None, Some(e)),
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return (None, Some("not running as root: no cgroup".into()));
    }
    if Path::new(ROOT).join("cgroup.controllers").exists() {
        setup_v2(&rel, limits)
    } else {
        setup_v1(&rel, limits)
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    fs::write(dir.join(file), value).map_err(|e| format!("{file}={value}: {e}"))
}

fn cpu_quota_us(cores: f64) -> u64 {
    ((cores * CPU_PERIOD_US as f64) as u64).max(1000)
}

fn setup_v1(rel: &Path, limits: &Limits) -> (Option<Cgroup>, Option<String>) {
    let mut dirs = Vec::new();
    let mut previous = Vec::new();
    let mut errors = Vec::new();
    let me = std::process::id().to_string();
    for ctrl in V1_CONTROLLERS {
        let root = Path::new(ROOT).join(ctrl);
        if !root.join("cgroup.procs").exists() {
            errors.push(format!(
                "no cgroup v1 {ctrl} hierarchy at {}",
                root.display()
            ));
            continue;
        }
        let dir = root.join(rel);
        if let Err(e) = fs::create_dir_all(&dir) {
            errors.push(format!("creating {}: {e}", dir.display()));
            continue;
        }
        kill_stale(&dir);
        let applied = match ctrl {
            "memory" => {
                let v = limits
                    .memory_bytes
                    .map_or("-1".to_string(), |b| b.to_string());
                let memsw = dir.join("memory.memsw.limit_in_bytes").exists();
                if memsw {
                    let _ = write(&dir, "memory.memsw.limit_in_bytes", "-1");
                }
                let r = write(&dir, "memory.limit_in_bytes", &v);
                if memsw && r.is_ok() {
                    let _ = write(&dir, "memory.memsw.limit_in_bytes", &v);
                }
                r
            }
            "cpu" => write(&dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string()).and_then(|_| {
                let q = limits
                    .cpu
                    .map_or("-1".to_string(), |c| cpu_quota_us(c).to_string());
                write(&dir, "cpu.cfs_quota_us", &q)
            }),
            _ => {
                let v = limits.pids.map_or("max".to_string(), |p| p.to_string());
                write(&dir, "pids.max", &v)
            }
        };
        if let Err(e) = applied {
            errors.push(format!("{}: {e}", dir.display()));
            let _ = fs::remove_dir(&dir);
            continue;
        }
        let prev = current(ctrl);
        if let Err(e) = write(&dir, "cgroup.procs", &me) {
            errors.push(format!("{}: {e}", dir.display()));
            let _ = fs::remove_dir(&dir);
            continue;
        }
        dirs.push(dir);
        previous.push(prev);
    }
    let err = (!errors.is_empty()).then(|| errors.join("; "));
    if dirs.is_empty() {
        (None, err)
    } else {
        (Some(Cgroup { dirs, previous }), err)
    }
}

fn setup_v2(rel: &Path, limits: &Limits) -> (Option<Cgroup>, Option<String>) {
    let root = PathBuf::from(ROOT);
    let dir = root.join(rel);
    if let Err(e) = fs::create_dir_all(&dir) {
        return (None, Some(format!("creating {}: {e}", dir.display())));
    }
    kill_stale(&dir);
    let mut errors = Vec::new();
    // Enable the controllers on every ancestor's subtree_control, root down to the parent.
    let mut ancestor = root.clone();
    let mut comps: Vec<_> = rel.components().collect();
    comps.pop();
    for c in std::iter::once(None).chain(comps.into_iter().map(Some)) {
        if let Some(c) = c {
            ancestor.push(c);
        }
        let available = fs::read_to_string(ancestor.join("cgroup.controllers")).unwrap_or_default();
        for ctrl in ["memory", "cpu", "pids"] {
            if !available.split_whitespace().any(|a| a == ctrl) {
                errors.push(format!(
                    "controller {ctrl} not available in {}",
                    ancestor.display()
                ));
                continue;
            }
            if let Err(e) = write(&ancestor, "cgroup.subtree_control", &format!("+{ctrl}")) {
                errors.push(format!("{}: {e}", ancestor.display()));
            }
        }
    }
    let mem = limits
        .memory_bytes
        .map_or("max".to_string(), |b| b.to_string());
    let cpu = limits.cpu.map_or(format!("max {CPU_PERIOD_US}"), |c| {
        format!("{} {CPU_PERIOD_US}", cpu_quota_us(c))
    });
    let pids = limits.pids.map_or("max".to_string(), |p| p.to_string());
    for (file, value, wanted) in [
        ("memory.max", mem, limits.memory_bytes.is_some()),
        ("cpu.max", cpu, limits.cpu.is_some()),
        ("pids.max", pids, limits.pids.is_some()),
    ] {
        if dir.join(file).exists() || wanted {
            if let Err(e) = write(&dir, file, &value) {
                errors.push(format!("{}: {e}", dir.display()));
            }
        }
    }
    let prev = current("");
    if let Err(e) = write(&dir, "cgroup.procs", &std::process::id().to_string()) {
        errors.push(format!("{}: {e}", dir.display()));
        let _ = fs::remove_dir(&dir);
        return (None, Some(errors.join("; ")));
    }
    let err = (!errors.is_empty()).then(|| errors.join("; "));
    (
        Some(Cgroup {
            dirs: vec![dir],
            previous: vec![prev],
        }),
        err,
    )
}

/// Memory in use by the cgroup at `path` (v1 `memory.usage_in_bytes`, v2 `memory.current`).
pub fn memory_usage(path: &Path) -> Option<u64> {
    ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .find_map(|f| fs::read_to_string(path.join(f)).ok())
        .and_then(|s| s.trim().parse().ok())
}
