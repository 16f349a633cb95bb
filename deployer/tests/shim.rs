//! `berth-shim` driven as berthd drives it: the real binary, a spec file, small shell and
//! Python children, a state file to watch. Root-only parts (app users, cgroups, bwrap as an
//! app user, iptables) print why they are skipped when not run as root.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use berth_deployer::shim::{
    self, ensure_app_user, read_state, remove_app_user, Limits, LogTarget, RestartPolicy, Sandbox,
    SandboxMode, Spec, State, UserSpec,
};

const SH: &str = "/bin/sh";
const PYTHON: &str = "/usr/bin/python3";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        println!("SKIPPED {test}: needs root (run the tests as root to cover it)");
        return true;
    }
    false
}

/// useradd/userdel lock /etc/passwd: one at a time.
static USERS: Mutex<()> = Mutex::new(());

fn app_user(app: &str) -> UserSpec {
    let _g = USERS.lock().unwrap_or_else(|p| p.into_inner());
    ensure_app_user(app, "berth-t-").expect("ensure_app_user")
}

fn drop_user(app: &str) {
    let _g = USERS.lock().unwrap_or_else(|p| p.into_inner());
    remove_app_user(app, "berth-t-").expect("remove_app_user");
}

/// A tempdir the app user can traverse (tempdirs are 0700).
fn tempdir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn base_spec(dir: &Path, argv: &[&str]) -> Spec {
    let bundle = dir.join("bundle");
    fs::create_dir_all(&bundle).unwrap();
    let scratch = dir.join("scratch");
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), "/usr/bin:/bin".to_string());
    env.insert("BERTH_APP".to_string(), "shimtest".to_string());
    env.insert(
        "BERTH_SCRATCH_DIR".to_string(),
        scratch.display().to_string(),
    );
    Spec {
        app: "shimtest".into(),
        version: "1.2.0".into(),
        instance: format!("1.2.0-{}", std::process::id()),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env,
        cwd: bundle,
        user: None,
        scratch_dir: scratch,
        state_file: dir.join("state.json"),
        limits: Limits::default(),
        sandbox: Sandbox {
            mode: SandboxMode::Never,
            hide: vec![],
            read_only: vec![],
        },
        log: None,
        restart: RestartPolicy {
            initial_backoff_ms: 100,
            max_backoff_ms: 400,
            stable_after_ms: 60_000,
        },
        stop_grace_ms: 2_000,
    }
}

struct Shim {
    child: Child,
    state_file: PathBuf,
    out: PathBuf,
}

impl Shim {
    fn start(dir: &Path, spec: &Spec) -> Shim {
        Shim::start_env(dir, spec, &[])
    }

    fn start_env(dir: &Path, spec: &Spec, env: &[(&str, &str)]) -> Shim {
        let spec_file = dir.join("spec.json");
        fs::write(&spec_file, serde_json::to_vec(spec).unwrap()).unwrap();
        let out = dir.join("shim.out");
        let child = Command::new(env!("CARGO_BIN_EXE_berth-shim"))
            .arg("--spec")
            .arg(&spec_file)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(dir.join("shim.err")).unwrap())
            .process_group(0)
            .envs(env.iter().copied())
            .spawn()
            .unwrap();
        Shim {
            child,
            state_file: spec.state_file.clone(),
            out,
        }
    }

    fn state(&self) -> Option<State> {
        read_state(&self.state_file).ok()
    }

    fn wait_state(&self, what: &str, timeout: Duration, f: impl Fn(&State) -> bool) -> State {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.state() {
                if f(&s) {
                    return s;
                }
                if Instant::now() > deadline {
                    panic!(
                        "timed out waiting for {what}; state {s:#?}; output {}",
                        self.output()
                    );
                }
            } else if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}: no state; output {}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn running(&self) -> State {
        self.wait_state("running", Duration::from_secs(10), |s| {
            s.state == "running" && s.child_pid.is_some()
        })
    }

    fn output(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_output(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.contains(needle) {
                return out;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in output:\n{out}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a line that is exactly `line` (not just mentioned in the shim's own lines).
    fn wait_line(&self, line: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.lines().any(|l| l == line) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "no line {line:?} in output:\n{out}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM, then waits for the exit; returns (exit code, how long it took).
    fn stop(&mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code(), t.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "shim did not stop; output {}",
                self.output()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a process is gone (or a zombie nobody reaped yet).
fn dead(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
    }
}

fn wait_dead(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if dead(pid) {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    dead(pid)
}

#[test]
fn bad_spec_is_refused() {
    let dir = tempdir();
    let spec_file = dir.path().join("spec.json");
    let mut v = serde_json::to_value(base_spec(dir.path(), &["true"])).unwrap();
    v["surprise"] = serde_json::json!(1);
    fs::write(&spec_file, v.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth-shim"))
        .arg("--spec")
        .arg(&spec_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("surprise"));
}

#[test]
fn restarts_with_backoff_and_stops() {
    let dir = tempdir();
    let spec = base_spec(dir.path(), &[SH, "-c", "echo started; exit 3"]);
    let mut shim = Shim::start(dir.path(), &spec);
    let t = Instant::now();
    let s = shim.wait_state("3 restarts", Duration::from_secs(10), |s| s.restarts >= 3);
    // Backoff 100, 200, 400 ms before the 3rd restart.
    assert!(
        t.elapsed() >= Duration::from_millis(650),
        "too fast: {:?}",
        t.elapsed()
    );
    assert_eq!(s.last_exit.as_deref(), Some("exit 3"));
    assert_eq!(s.shim_pid, shim.child.id());
    assert_eq!(s.sandbox, "none: sandbox mode never");
    let out = shim.wait_output(
        "exited with exit 3; restarting in 400ms",
        Duration::from_secs(5),
    );
    assert!(
        out.contains("berth-shim: exited with exit 3; restarting in 100ms"),
        "{out}"
    );
    assert!(
        out.contains("berth-shim: exited with exit 3; restarting in 200ms"),
        "{out}"
    );
    assert!(out.matches("started\n").count() >= 3, "{out}");
    let (code, _) = shim.stop();
    assert_eq!(code, Some(0));
    let s = shim.state().unwrap();
    assert_eq!(s.state, "stopped");
    assert_eq!(s.child_pid, None);
}

#[test]
fn stable_run_resets_backoff() {
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "sleep 0.3; exit 1"]);
    spec.restart = RestartPolicy {
        initial_backoff_ms: 50,
        max_backoff_ms: 5_000,
        stable_after_ms: 200,
    };
    let shim = Shim::start(dir.path(), &spec);
    shim.wait_state("2 restarts", Duration::from_secs(10), |s| s.restarts >= 2);
    let out = shim.output();
    assert!(!out.contains("restarting in 100ms"), "backoff grew: {out}");
    assert!(out.matches("restarting in 50ms").count() >= 2, "{out}");
}

#[test]
fn sigterm_stops_the_whole_group_within_the_grace() {
    let dir = tempdir();
    // Everything ignores SIGTERM: the shim must SIGKILL the group after the grace.
    let script = r#"trap '' TERM; sleep 1000 & echo $! > "$BERTH_SCRATCH_DIR/bg"; sleep 1000 & echo $! >> "$BERTH_SCRATCH_DIR/bg"; echo ready; wait"#;
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.stop_grace_ms = 700;
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    shim.wait_line("ready", Duration::from_secs(5));
    let bg: Vec<i32> = fs::read_to_string(spec.scratch_dir.join("bg"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(bg.len(), 2);
    let leader = s.child_pid.unwrap() as i32;
    let (code, took) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_millis(650),
        "did not wait the grace: {took:?}"
    );
    assert!(took < Duration::from_millis(4_000), "too slow: {took:?}");
    for pid in bg.iter().copied().chain([leader]) {
        assert!(
            wait_dead(pid, Duration::from_secs(2)),
            "pid {pid} survived the stop"
        );
    }
    let s = shim.state().unwrap();
    assert_eq!(s.state, "stopped");
    assert_eq!(s.last_exit.as_deref(), Some("signal 9"));
}

#[test]
fn graceful_app_exits_on_sigterm_quickly() {
    let dir = tempdir();
    let script =
        r#"trap 'echo got-term; exit 0' TERM; echo ready; while true; do sleep 0.05; done"#;
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.stop_grace_ms = 10_000;
    let mut shim = Shim::start(dir.path(), &spec);
    shim.running();
    shim.wait_line("ready", Duration::from_secs(5));
    let (code, took) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(shim.output().contains("got-term"), "{}", shim.output());
    assert_eq!(shim.state().unwrap().last_exit.as_deref(), Some("exit 0"));
}

fn kill9_takes_the_app_down(mode: SandboxMode) {
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo ready; exec sleep 1000"]);
    spec.sandbox.mode = mode;
    let shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    shim.wait_line("ready", Duration::from_secs(10));
    let child = s.child_pid.unwrap() as i32;
    let descendants = shim::procs::descendants(child);
    shim.signal(libc::SIGKILL);
    assert!(
        wait_dead(child, Duration::from_secs(3)),
        "app survived kill -9 of its shim"
    );
    for d in descendants {
        assert!(
            wait_dead(d, Duration::from_secs(3)),
            "pid {d} survived kill -9 of its shim"
        );
    }
}

#[test]
fn kill9_of_the_shim_takes_the_app_down() {
    kill9_takes_the_app_down(SandboxMode::Never);
}

#[test]
fn kill9_of_the_shim_takes_the_sandboxed_app_down() {
    if shim::sandbox::find_bwrap().is_none() {
        println!("SKIPPED: no bwrap");
        return;
    }
    kill9_takes_the_app_down(SandboxMode::Always);
}

#[test]
fn env_is_exactly_the_specs() {
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &["env"]);
    spec.env.insert("BERTH_VERSION".into(), "1.2.0".into());
    spec.env.insert("WITH SPACE".into(), "a b=c".into());
    spec.restart.initial_backoff_ms = 60_000;
    spec.restart.max_backoff_ms = 60_000;
    let shim = Shim::start(dir.path(), &spec);
    let out = shim.wait_output("berth-shim: exited with exit 0", Duration::from_secs(5));
    let got: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("berth-shim:"))
        .collect();
    let want: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted: Vec<&str> = want.iter().map(String::as_str).collect();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted);
}

#[test]
fn scratch_is_emptied_between_starts() {
    let dir = tempdir();
    let script = r#"echo "scratch:[$(ls -A "$BERTH_SCRATCH_DIR" | tr '\n' ' ')] mode:$(stat -c %a "$BERTH_SCRATCH_DIR") cwd:$(pwd)"; touch "$BERTH_SCRATCH_DIR/left-$$"; mkdir "$BERTH_SCRATCH_DIR/d"; exit 1"#;
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.restart.initial_backoff_ms = 20;
    spec.restart.max_backoff_ms = 20;
    let shim = Shim::start(dir.path(), &spec);
    shim.wait_state("3 restarts", Duration::from_secs(10), |s| s.restarts >= 3);
    let out = shim.output();
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("scratch:")).collect();
    assert!(lines.len() >= 3, "{out}");
    let want = format!("scratch:[] mode:700 cwd:{}", spec.cwd.display());
    for l in lines {
        assert_eq!(l, want);
    }
}

#[test]
fn spawn_failure_is_reported_and_retried() {
    let dir = tempdir();
    let spec = base_spec(dir.path(), &["/nonexistent/app"]);
    let shim = Shim::start(dir.path(), &spec);
    let s = shim.wait_state("a restart", Duration::from_secs(10), |s| s.restarts >= 1);
    let exit = s.last_exit.unwrap();
    assert!(exit.starts_with("spawn failed:"), "{exit}");
}

#[test]
fn runs_as_the_app_user() {
    if skip_unless_root("runs_as_the_app_user") {
        return;
    }
    let user = app_user("shimuser");
    let dir = tempdir();
    let script = r#"echo "ids:$(id -u):$(id -g):$(id -G)"; echo "owner:$(stat -c %u:%g "$BERTH_SCRATCH_DIR")"; touch "$BERTH_SCRATCH_DIR/ok" && echo scratch-writable; touch ./nope 2>/dev/null || echo cwd-readonly; exec sleep 1000"#;
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.user = Some(user);
    spec.limits.nofile = Some(123);
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    let out = shim.wait_line("cwd-readonly", Duration::from_secs(5));
    assert!(
        out.contains(&format!("ids:{}:{}:{}\n", user.uid, user.gid, user.gid)),
        "{out}"
    );
    assert!(
        out.contains(&format!("owner:{}:{}", user.uid, user.gid)),
        "{out}"
    );
    assert!(out.contains("scratch-writable"), "{out}");
    let limits = fs::read_to_string(format!("/proc/{}/limits", s.child_pid.unwrap())).unwrap();
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert!(
        nofile.split_whitespace().filter(|w| *w == "123").count() == 2,
        "{nofile}"
    );
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(
        core.split_whitespace().filter(|w| *w == "0").count() == 2,
        "{core}"
    );
    assert_eq!(shim.stop().0, Some(0));
    drop_user("shimuser");
}

#[test]
fn memory_cgroup_limit_kills_a_hog() {
    if skip_unless_root("memory_cgroup_limit_kills_a_hog") {
        return;
    }
    let dir = tempdir();
    let hog = "import sys\nprint('hogging', flush=True)\nx = []\nwhile True:\n    x.append(bytearray(8 << 20))\n";
    let mut spec = base_spec(dir.path(), &[PYTHON, "-c", hog]);
    let parent = format!("berth-test-{}-mem", std::process::id());
    spec.limits = Limits {
        memory_bytes: Some(64 << 20),
        cpu: Some(0.5),
        pids: Some(64),
        nofile: None,
        cgroup_parent: Some(format!("{parent}/mem")),
    };
    spec.restart.initial_backoff_ms = 1_000;
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.wait_state("the hog killed", Duration::from_secs(20), |s| {
        s.last_exit.is_some() && s.cgroup.is_some()
    });
    assert_eq!(s.last_exit.as_deref(), Some("signal 9"), "{s:#?}");
    let cg = PathBuf::from(s.cgroup.clone().unwrap());
    let v1 = cg.join("memory.limit_in_bytes").exists();
    if v1 {
        assert_eq!(
            fs::read_to_string(cg.join("memory.limit_in_bytes"))
                .unwrap()
                .trim(),
            "67108864"
        );
        let cpu = Path::new("/sys/fs/cgroup/cpu")
            .join(&parent)
            .join("mem")
            .join(&spec.instance);
        assert_eq!(
            fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "50000"
        );
        let pids = Path::new("/sys/fs/cgroup/pids")
            .join(&parent)
            .join("mem")
            .join(&spec.instance);
        assert_eq!(
            fs::read_to_string(pids.join("pids.max")).unwrap().trim(),
            "64"
        );
    } else {
        assert_eq!(
            fs::read_to_string(cg.join("memory.max")).unwrap().trim(),
            "67108864"
        );
    }
    let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(
        procs
            .lines()
            .any(|l| l.trim() == shim.child.id().to_string()),
        "shim not in {procs}"
    );
    assert!(shim::memory_bytes(&s).is_some());
    assert_eq!(shim.stop().0, Some(0));
    assert!(!cg.exists(), "cgroup {} not removed", cg.display());
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ] {
        let _ = fs::remove_dir(Path::new(root).join(&parent).join("mem"));
        let _ = fs::remove_dir(Path::new(root).join(&parent));
    }
}

#[test]
fn memory_bytes_without_cgroup_reads_rss() {
    let dir = tempdir();
    let spec = base_spec(dir.path(), &["sleep", "1000"]);
    let shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    let m = shim::memory_bytes(&s).unwrap();
    assert!(m > 0 && m < 1 << 30, "{m}");
}

/// Runs `code` in Python as `user`; returns its stdout.
fn python_as(user: UserSpec, code: &str) -> String {
    let out = Command::new(PYTHON)
        .args(["-c", code])
        .uid(user.uid)
        .gid(user.gid)
        .env_clear()
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const CONNECT: &str = r#"
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect(('127.0.0.1', PORT))
    s.sendall(b'hi')
    print('ok', s.recv(10).decode())
except ConnectionRefusedError:
    print('refused')
except Exception as e:
    print('other', type(e).__name__)
"#;

#[test]
fn network_guard_allows_only_the_allowed_ports() {
    if skip_unless_root("network_guard_allows_only_the_allowed_ports") {
        return;
    }
    if let Err(e) = shim::guard_available() {
        panic!("guard not available as root: {e}");
    }
    let user = app_user("shimnet");
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let denied = TcpListener::bind("127.0.0.1:0").unwrap();
    for l in [&allowed, &denied] {
        let l = l.try_clone().unwrap();
        thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut b = [0u8; 2];
                let _ = std::io::Read::read_exact(&mut c, &mut b);
                let _ = c.write_all(b"yo");
            }
        });
    }
    let (ap, dp) = (
        allowed.local_addr().unwrap().port(),
        denied.local_addr().unwrap().port(),
    );
    let connect = |port: u16| python_as(user, &CONNECT.replace("PORT", &port.to_string()));
    assert_eq!(connect(dp), "ok yo", "not reachable before the guard");
    shim::guard_app(user.uid, &[allowed.local_addr().unwrap()], &[]).unwrap();
    // Twice: idempotent.
    shim::guard_app(user.uid, &[allowed.local_addr().unwrap()], &[]).unwrap();
    let result = std::panic::catch_unwind(|| {
        assert_eq!(connect(ap), "ok yo");
        assert_eq!(connect(dp), "refused");
        // Root is not guarded.
        let mut c = TcpStream::connect(("127.0.0.1", dp)).unwrap();
        c.write_all(b"hi").unwrap();
        // Connections to the app (as the router makes them) are answered: conntrack works.
        let server = r#"
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.settimeout(3); c.sendall(c.recv(10).upper()); c.close()
"#;
        let mut srv = Command::new(PYTHON)
            .args(["-c", server])
            .uid(user.uid)
            .gid(user.gid)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        BufReader::new(srv.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", port.trim().parse::<u16>().unwrap())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        std::io::Read::read_exact(&mut c, &mut b).unwrap();
        assert_eq!(&b, b"PING");
        let _ = srv.wait();
    });
    shim::unguard_app(user.uid).unwrap();
    shim::unguard_app(user.uid).unwrap();
    let after = connect(dp);
    drop_user("shimnet");
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
    assert_eq!(after, "ok yo", "still blocked after unguard");
}

#[test]
fn app_users_need_a_valid_name() {
    assert!(ensure_app_user("Bad Name", "app-").is_err());
    assert!(ensure_app_user(&"x".repeat(40), "app-").is_err());
}

#[path = "shim/logs.rs"]
mod logs;
#[path = "shim/sandbox.rs"]
mod sandbox;
