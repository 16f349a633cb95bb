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

#[test]
fn bwrap_hides_paths_and_makes_the_bundle_read_only() {
    if skip_unless_root("bwrap_hides_paths_and_makes_the_bundle_read_only") {
        return;
    }
    let user = app_user("shimbw");
    let dir = tempdir();
    // berthd's data dir, hidden; the scratch dir lives under it and must stay writable.
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("secret"), "s3cret").unwrap();
    fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(data.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
    let script = r#"
cat "$DATA/secret" 2>/dev/null && echo LEAK || echo hidden-ok
touch ./x 2>/dev/null && echo BUNDLE-WRITABLE || echo bundle-ro-ok
cat ./app.txt
touch "$BERTH_SCRATCH_DIR/ok" && echo scratch-ok
echo "pid:$$"
trap 'echo got-term; exit 0' TERM
echo ready
while true; do sleep 0.05; done
"#;
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    fs::write(spec.cwd.join("app.txt"), "bundle-content\n").unwrap();
    fs::set_permissions(spec.cwd.join("app.txt"), fs::Permissions::from_mode(0o644)).unwrap();
    // The bundle is writable by the app user on disk: only the sandbox makes it read-only.
    fs::set_permissions(&spec.cwd, fs::Permissions::from_mode(0o777)).unwrap();
    spec.scratch_dir = data.join("scratch").join("inst");
    spec.env.insert(
        "BERTH_SCRATCH_DIR".into(),
        spec.scratch_dir.display().to_string(),
    );
    spec.env.insert("DATA".into(), data.display().to_string());
    spec.user = Some(user);
    spec.sandbox = Sandbox {
        mode: SandboxMode::Always,
        hide: vec![data.clone()],
        read_only: vec![],
    };
    spec.stop_grace_ms = 5_000;
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    assert_eq!(s.sandbox, "bwrap");
    let out = shim.wait_line("ready", Duration::from_secs(10));
    for want in [
        "hidden-ok",
        "bundle-ro-ok",
        "bundle-content",
        "scratch-ok",
        "pid:2",
    ] {
        assert!(out.contains(want), "no {want} in:\n{out}");
    }
    assert!(
        !out.lines().any(|l| l == "LEAK" || l == "BUNDLE-WRITABLE"),
        "{out}"
    );
    assert!(spec.scratch_dir.join("ok").exists());
    let (code, took) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_secs(3),
        "SIGTERM did not reach the sandboxed app: {took:?}"
    );
    assert!(shim.output().contains("got-term"), "{}", shim.output());
    drop_user("shimbw");
}

/// A fake collector speaking the JSON-lines protocol with acks. The first connection is cut
/// after one event without an ack (the shim must resend); later ones ack every read.
type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

fn fake_collector() -> (SocketAddr, Seen, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let hellos = Arc::new(Mutex::new(Vec::new()));
    let (ev, he) = (events.clone(), hellos.clone());
    thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(conn) = conn else { continue };
            let (ev, he) = (ev.clone(), he.clone());
            thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                he.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
                w.write_all(b"{\"ok\":\"hello\",\"app\":\"shimtest\",\"ack\":true}\n")
                    .unwrap();
                let mut count = 0u64;
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    count += 1;
                    if n == 0 {
                        return; // cut without acking
                    }
                    ev.lock()
                        .unwrap()
                        .push(serde_json::from_str(&line).unwrap());
                    if r.buffer().is_empty()
                        && w.write_all(format!("{{\"ack\":{count}}}\n").as_bytes())
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, events, hellos)
}

#[test]
fn logs_reach_the_collector_with_acks() {
    let (addr, events, hellos) = fake_collector();
    let dir = tempdir();
    let script = "for i in 1 2 3 4 5; do echo out-$i; done; echo err-1 >&2; exit 0";
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.log = Some(LogTarget {
        addr: addr.to_string(),
        token: "tok-123".into(),
    });
    spec.restart.initial_backoff_ms = 60_000;
    spec.restart.max_backoff_ms = 60_000;
    let mut shim = Shim::start(dir.path(), &spec);
    let s = shim.wait_state("7 lines shipped", Duration::from_secs(15), |s| {
        s.log_shipped >= 7
    });
    assert_eq!(s.log_dropped, 0);
    let evs = events.lock().unwrap().clone();
    let msgs: Vec<&str> = evs.iter().map(|e| e["message"].as_str().unwrap()).collect();
    for want in ["out-1", "out-2", "out-3", "out-4", "out-5", "err-1"] {
        assert!(msgs.contains(&want), "{want} missing from {msgs:?}");
    }
    let out1 = evs.iter().find(|e| e["message"] == "out-1").unwrap();
    assert_eq!(out1["stream"], "stdout");
    assert_eq!(out1["level"], "info");
    assert_eq!(out1["version"], "1.2.0");
    assert_eq!(out1["instance"], spec.instance.as_str());
    assert!(out1["timestamp"].as_f64().unwrap() > 1.7e9);
    let err1 = evs.iter().find(|e| e["message"] == "err-1").unwrap();
    assert_eq!(
        (err1["stream"].as_str(), err1["level"].as_str()),
        (Some("stderr"), Some("warning"))
    );
    let shim_lines: Vec<&str> = (evs.iter())
        .filter(|e| e["stream"] == "shim")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(shim_lines[0].starts_with("supervising "), "{shim_lines:?}");
    assert!(
        shim_lines.contains(&"exited with exit 0; restarting in 60000ms"),
        "{shim_lines:?}"
    );
    let hello = hellos.lock().unwrap()[0].clone();
    assert_eq!(hello["hello"]["app"], "shimtest");
    assert_eq!(hello["hello"]["token"], "tok-123");
    assert_eq!(hello["hello"]["ack"], true);
    assert!(
        hellos.lock().unwrap().len() >= 2,
        "no reconnect after the cut"
    );
    // The stop line is flushed before the shim exits.
    assert_eq!(shim.stop().0, Some(0));
    assert!(events.lock().unwrap().iter().any(|e| e["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("stopped"))));
    let s = shim.state().unwrap();
    assert!(s.log_shipped >= 8, "{s:#?}");
}

#[test]
fn logs_without_a_collector_are_queued_and_stop_is_bounded() {
    // Nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo hello; exec sleep 1000"]);
    spec.log = Some(LogTarget {
        addr: format!("127.0.0.1:{port}"),
        token: "t".into(),
    });
    let mut shim = Shim::start(dir.path(), &spec);
    shim.running();
    shim.wait_line("hello", Duration::from_secs(5));
    let (code, took) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let s = shim.state().unwrap();
    assert_eq!(s.log_shipped, 0);
    assert!(s.log_dropped >= 1, "{s:#?}");
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

/// The real log collector binary, when built in this target dir (`cargo build -p
/// log-collector`) or named by `BERTH_LOG_COLLECTOR`.
fn collector_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_LOG_COLLECTOR") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("log-collector");
    p.is_file().then_some(p)
}

struct Collector {
    child: Child,
    json: String,
    http: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_collector(bin: &Path, dir: &Path, app: &str, token: &str) -> Collector {
    let tenants = dir.join("tenants.toml");
    fs::write(
        &tenants,
        format!("[[app]]\nname = \"{app}\"\ntoken = \"{token}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("logs"))
        .args([
            "--listen-json",
            "127.0.0.1:0",
            "--listen-http",
            "127.0.0.1:0",
        ])
        .args(["--listen-syslog", "", "--listen-otlp", ""])
        .args(["--admin-listen", "127.0.0.1:0", "--tenants"])
        .arg(&tenants)
        .stdout(Stdio::piped())
        .stderr(fs::File::create(dir.join("collector.err")).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut json, mut http) = (String::new(), String::new());
    let mut line = String::new();
    while json.is_empty() || http.is_empty() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "collector exited");
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["LISTEN", "json", a] => json = a.to_string(),
            ["LISTEN", "http", a] => http = a.to_string(),
            _ => {}
        }
    }
    thread::spawn(move || for _ in out.lines() {});
    Collector { child, json, http }
}

fn http_events(addr: &str, app: &str, token: &str) -> serde_json::Value {
    let mut c = TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /v1/apps/{app}/events?limit=1000 HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    std::io::Read::read_to_string(&mut c, &mut resp).unwrap();
    let body = &resp[resp.find("\r\n\r\n").expect("http response") + 4..];
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {resp}"))
}

#[test]
fn logs_reach_the_real_collector() {
    let Some(bin) = collector_binary() else {
        println!("SKIPPED logs_reach_the_real_collector: no log-collector binary (cargo build -p log-collector, or set BERTH_LOG_COLLECTOR)");
        return;
    };
    let dir = tempdir();
    let token = "shimtest-token-0123456789abcdef";
    let collector = start_collector(&bin, dir.path(), "shimtest", token);
    let script = "echo first; echo second >&2; printf 'no newline'; exit 4";
    let mut spec = base_spec(dir.path(), &[SH, "-c", script]);
    spec.log = Some(LogTarget {
        addr: collector.json.clone(),
        token: token.into(),
    });
    spec.restart.initial_backoff_ms = 60_000;
    spec.restart.max_backoff_ms = 60_000;
    let mut shim = Shim::start(dir.path(), &spec);
    // supervising + 3 lines + the exit line
    shim.wait_state("5 lines shipped", Duration::from_secs(15), |s| {
        s.log_shipped >= 5
    });
    let body = http_events(&collector.http, "shimtest", token);
    let events = body["events"].as_array().unwrap();
    let find = |m: &str| events.iter().find(|e| e["message"] == m).cloned();
    let first = find("first").unwrap_or_else(|| panic!("no 'first' in {body}"));
    assert_eq!(first["level"], "info");
    let second = find("second").unwrap();
    assert_eq!(second["level"], "warning");
    assert!(find("no newline").is_some(), "{body}");
    assert!(
        find("exited with exit 4; restarting in 60000ms").is_some(),
        "{body}"
    );
    assert_eq!(shim.stop().0, Some(0));
    let s = shim.state().unwrap();
    assert_eq!(s.log_dropped, 0, "{s:#?}");

    // A wrong token: refused at the hello, nothing shipped, the app runs on.
    let dir2 = tempdir();
    let mut spec = base_spec(dir2.path(), &[SH, "-c", "echo hi; exec sleep 1000"]);
    spec.log = Some(LogTarget {
        addr: collector.json.clone(),
        token: "wrong".into(),
    });
    let mut shim = Shim::start(dir2.path(), &spec);
    shim.running();
    shim.wait_line("hi", Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500));
    let err = fs::read_to_string(dir2.path().join("shim.err")).unwrap();
    assert!(err.contains("hello refused"), "{err}");
    assert_eq!(shim.stop().0, Some(0));
    assert_eq!(shim.state().unwrap().log_shipped, 0);
}

#[test]
fn sandbox_always_without_bwrap_fails_the_start_and_auto_falls_back() {
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo ran; exec sleep 1000"]);
    spec.sandbox.mode = SandboxMode::Always;
    let no_bwrap = [("BERTH_BWRAP", "/nonexistent/bwrap")];
    let mut shim = Shim::start_env(dir.path(), &spec, &no_bwrap);
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = shim.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(Instant::now() < deadline, "shim did not give up");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(2));
    let s = shim.state().unwrap();
    assert_eq!(s.state, "stopped");
    assert_eq!(s.child_pid, None);
    assert!(
        s.sandbox
            .starts_with("none: sandbox mode always: bwrap not found"),
        "{s:#?}"
    );
    assert!(s.last_exit.unwrap().starts_with("not started"));
    assert!(!shim.output().lines().any(|l| l == "ran"));

    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo ran; exec sleep 1000"]);
    spec.sandbox.mode = SandboxMode::Auto;
    let shim = Shim::start_env(dir.path(), &spec, &no_bwrap);
    let s = shim.running();
    assert_eq!(
        s.sandbox,
        "none: bwrap not found (Debian package bubblewrap)"
    );
    shim.wait_line("ran", Duration::from_secs(5));
}

#[test]
fn sandbox_auto_uses_bwrap_when_it_works() {
    if shim::sandbox::find_bwrap().is_none() {
        println!("SKIPPED sandbox_auto_uses_bwrap_when_it_works: no bwrap");
        return;
    }
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &[SH, "-c", "echo pid:$$; exec sleep 1000"]);
    spec.sandbox.mode = SandboxMode::Auto;
    let shim = Shim::start(dir.path(), &spec);
    let s = shim.running();
    assert_eq!(s.sandbox, "bwrap");
    shim.wait_line("pid:2", Duration::from_secs(5));
}

#[test]
fn a_stale_process_in_the_instance_cgroup_is_killed_on_start() {
    if skip_unless_root("a_stale_process_in_the_instance_cgroup_is_killed_on_start") {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        println!("SKIPPED a_stale_process_in_the_instance_cgroup_is_killed_on_start: v1 only");
        return;
    }
    let dir = tempdir();
    let mut spec = base_spec(dir.path(), &["sleep", "1000"]);
    let parent = format!("berth-test-{}-stale", std::process::id());
    spec.limits.cgroup_parent = Some(format!("{parent}/stale"));
    let cg = Path::new("/sys/fs/cgroup/memory/")
        .join(&parent)
        .join("stale")
        .join(&spec.instance);
    fs::create_dir_all(&cg).unwrap();
    let mut stale = Command::new("sleep").arg("1000").spawn().unwrap();
    fs::write(cg.join("cgroup.procs"), stale.id().to_string()).unwrap();
    let mut shim = Shim::start(dir.path(), &spec);
    shim.running();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stale.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "stale process survived");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(shim.stop().0, Some(0));
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/pids",
    ] {
        let _ = fs::remove_dir(Path::new(root).join(&parent).join("stale"));
        let _ = fs::remove_dir(Path::new(root).join(&parent));
    }
}
