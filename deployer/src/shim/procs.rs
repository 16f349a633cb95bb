//! Small /proc helpers: descendants of a process, its name, its resident memory, signals.

use std::collections::HashMap;
use std::fs;

/// Every process's parent, from /proc (processes that vanish while scanning are skipped).
fn parents() -> HashMap<i32, i32> {
    let mut map = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Some(ppid) = stat_field(pid, 1) {
            map.insert(pid, ppid);
        }
    }
    map
}

/// Field `n` (0 = state) after the `(comm)` of /proc/PID/stat, as a number: 1 is the ppid.
fn stat_field(pid: i32, n: usize) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n)?.parse().ok()
}

/// All descendants of `pid` (not `pid` itself), parents before children.
pub fn descendants(pid: i32) -> Vec<i32> {
    let parents = parents();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (&child, &parent) in &parents {
            if parent == p && child != pid && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// The process's command name (`comm`).
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// Resident memory of one process, bytes (VmRSS).
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Sends `sig` to one process; errors (gone already) are ignored.
pub fn kill(pid: i32, sig: i32) {
    if pid > 0 {
        // SAFETY: kill(2) has no memory-safety preconditions; pid > 0 targets one process.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Sends `sig` to a process group; errors (empty group) are ignored.
pub fn kill_group(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) has no memory-safety preconditions; -pgid targets one group (> 1).
        unsafe {
            libc::kill(-pgid, sig);
        }
    }
}

/// Whether any process is left in the process group.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
