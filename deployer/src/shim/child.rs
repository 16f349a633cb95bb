//! Spawning the app: the environment, the user switch, rlimits, the parent-death signal, its
//! own process group, and the threads that read its stdout and stderr.

use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::logship::Shipper;
use super::procs;
use super::sandbox::{self, Decision};
use super::spec::{Spec, UserSpec};

/// Longest log line shipped; longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;

/// A running app process (or the bwrap around it).
#[derive(Debug)]
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its pid, also its process group id.
    pub pid: i32,
    /// Whether it is bwrap (the app is then a descendant in a new session).
    pub bwrap: bool,
    readers: Arc<AtomicUsize>,
}

impl Running {
    /// Waits (bounded) for the stdout/stderr readers to reach end of file.
    pub fn wait_readers(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.readers.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `sig` to the app while it is not reaped yet: its process group; under bwrap,
    /// for anything but SIGKILL, every process inside the sandbox but bwrap itself (the app
    /// runs in a session of its own there, and a signalled bwrap would kill it at once).
    pub fn signal(&self, sig: i32) {
        if !self.bwrap {
            procs::kill_group(self.pid, sig);
            return;
        }
        let inner: Vec<i32> = procs::descendants(self.pid)
            .into_iter()
            .filter(|&p| procs::comm(p).as_deref() != Some("bwrap"))
            .collect();
        if sig == libc::SIGKILL || inner.is_empty() {
            procs::kill_group(self.pid, sig);
        }
        for p in inner {
            procs::kill(p, sig);
        }
    }

    /// After the app was reaped: SIGKILL to what is left in its process group.
    pub fn kill_leftovers(&self) {
        procs::kill_group(self.pid, libc::SIGKILL);
    }
}

/// Adds the user switch, rlimits and the parent-death signal to `cmd` (run in the child
/// between fork and exec).
pub fn drop_privileges(cmd: &mut Command, user: Option<UserSpec>, nofile: Option<u64>) {
    // SAFETY: geteuid/getpid/getrlimit have no preconditions; `cur` is a valid out pointer.
    let (root, parent, nofile) = unsafe {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let hard = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) == 0 {
            cur.rlim_max
        } else {
            libc::RLIM_INFINITY
        };
        let root = libc::geteuid() == 0;
        // Unprivileged, the hard limit cannot be raised: clamp to it.
        let nofile = nofile.map(|n| if root { n } else { n.min(hard) });
        (root, libc::getpid(), nofile)
    };
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (setrlimit, setgroups, setgid, setuid, prctl, getppid,
    // kill); it allocates nothing and touches no locks. io::Error::last_os_error only reads
    // errno and builds an error value without allocating.
    unsafe {
        cmd.pre_exec(move || {
            let core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &core);
            if let Some(n) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(u) = user {
                if root && libc::setgroups(0, std::ptr::null()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::setgid(u.gid) != 0 || libc::setuid(u.uid) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            // After the uid switch: changing credentials clears the parent-death signal.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The shim died before the prctl took effect.
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Starts the app once: bwrap or direct, env cleared then the spec's, cwd, user, rlimits,
/// its own process group, stdin /dev/null, stdout/stderr piped to reader threads.
pub fn spawn(spec: &Spec, decision: &Decision, shipper: &Shipper) -> io::Result<Running> {
    let (argv, bwrap) = match decision {
        Decision::Bwrap(b) => (sandbox::bwrap_argv(b, spec), true),
        Decision::None(_) => (spec.argv.iter().map(Into::into).collect(), false),
    };
    let Some((prog, args)) = argv.split_first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    };
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    drop_privileges(&mut cmd, spec.user, spec.limits.nofile);
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let readers = Arc::new(AtomicUsize::new(0));
    if let Some(out) = child.stdout.take() {
        start_reader(out, "stdout", "info", shipper, &readers);
    }
    if let Some(err) = child.stderr.take() {
        start_reader(err, "stderr", "warning", shipper, &readers);
    }
    Ok(Running {
        child,
        pid,
        bwrap,
        readers,
    })
}

fn start_reader<R: Read + Send + 'static>(
    r: R,
    stream: &'static str,
    level: &'static str,
    shipper: &Shipper,
    readers: &Arc<AtomicUsize>,
) {
    let shipper = shipper.clone();
    let count = readers.clone();
    count.fetch_add(1, Ordering::SeqCst);
    let spawned = thread::Builder::new()
        .name(format!("read-{stream}"))
        .spawn(move || {
            let mut splitter = LineSplitter::default();
            pump(r, &mut splitter, |line| {
                shipper.app_line(stream, level, line)
            });
            count.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        readers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn pump<R: Read>(mut r: R, splitter: &mut LineSplitter, mut emit: impl FnMut(&str)) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.feed(&buf[..n], &mut emit),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    splitter.finish(&mut emit);
}

/// Splits a byte stream into lines (LF, a CR before it dropped), at most [`MAX_LINE`] bytes
/// each (cut at a UTF-8 boundary when possible); invalid UTF-8 is replaced.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes, emitting every complete line.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&str)) {
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            match data.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&data[..i]);
                    self.emit(emit);
                    data = &data[i + 1..];
                }
                None => {
                    let take = data.len().min(room);
                    self.partial.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.partial.len() >= MAX_LINE {
                        self.cut(emit);
                    }
                }
            }
        }
    }

    /// Emits what is left at end of file.
    pub fn finish(&mut self, emit: &mut impl FnMut(&str)) {
        if !self.partial.is_empty() {
            self.emit(emit);
        }
    }

    fn emit(&mut self, emit: &mut impl FnMut(&str)) {
        if self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        emit(&String::from_utf8_lossy(&self.partial));
        self.partial.clear();
    }

    /// Emits a full buffer without a newline, cut before a UTF-8 continuation sequence.
    fn cut(&mut self, emit: &mut impl FnMut(&str)) {
        let len = self.partial.len();
        // The start of the last character: back over up to 3 continuation bytes.
        let mut start = len - 1;
        while start > 0 && len - start < 4 && (self.partial[start] & 0xC0) == 0x80 {
            start -= 1;
        }
        let want = match self.partial[start] {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        let at = if start > 0 && start + want > len {
            start
        } else {
            len
        };
        let rest = self.partial.split_off(at);
        emit(&String::from_utf8_lossy(&self.partial));
        self.partial = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |l: &str| out.push(l.to_string()));
        }
        s.finish(&mut |l: &str| out.push(l.to_string()));
        out
    }

    #[test]
    fn lines_and_partial_and_crlf() {
        assert_eq!(split(&[b"a\nb", b"c\r\n", b"d"]), ["a", "bc", "d"]);
        assert_eq!(split(&[b"\n\n"]), ["", ""]);
    }

    #[test]
    fn long_lines_are_split_at_char_boundaries() {
        let long = "é".repeat(MAX_LINE); // 2 bytes each
        let input = format!("{long}\nx\n");
        let out = split(&[input.as_bytes()]);
        assert!(out
            .iter()
            .all(|l| l.len() <= MAX_LINE && !l.contains('\u{fffd}')));
        assert_eq!(out.concat(), format!("{long}x"));
        let exact = "y".repeat(MAX_LINE);
        assert_eq!(split(&[format!("{exact}\n").as_bytes()]), [exact]);
    }
}
