//! `berth-shim`: the supervisor of one app instance. berthd starts one shim per instance
//! (`berth-shim --spec FILE`, detached); the shim sets up the cgroup, starts the app (under
//! bubblewrap when it can), ships its stdout/stderr to the log collector, restarts it with
//! backoff when it exits, and stops it on SIGTERM/SIGINT. It reports in a JSON state file
//! ([`State`], read with [`read_state`]) so a restarted berthd can re-adopt it.
//!
//! Also here, for berthd: app users ([`ensure_app_user`]) and the network guard
//! ([`guard_app`]).

pub mod cgroup;
pub mod child;
pub mod logship;
pub mod netguard;
pub mod procs;
pub mod sandbox;
pub mod spec;
pub mod users;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;

pub use netguard::{guard_app, guard_available, unguard_app};
pub use spec::{
    read_state, Limits, LogTarget, RestartPolicy, Sandbox, SandboxMode, Spec, State, UserSpec,
};
pub use users::{ensure_app_user, remove_app_user};

use child::Running;
use logship::Shipper;
use sandbox::Decision;
use spec::now_ms;

const POLL: Duration = Duration::from_millis(25);
const STATE_REFRESH: Duration = Duration::from_secs(2);
const LOG_FLUSH: Duration = Duration::from_secs(2);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe); the sigaction
        // struct is fully initialised (zeroed, then handler and an empty mask set).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Memory in use by the instance: the cgroup's usage if it has one, else the resident memory
/// of the child and its descendants (from /proc).
pub fn memory_bytes(state: &State) -> Option<u64> {
    if let Some(cg) = &state.cgroup {
        if let Some(b) = cgroup::memory_usage(Path::new(cg)) {
            return Some(b);
        }
    }
    let pid = state.child_pid? as i32;
    let own = procs::rss_bytes(pid)?;
    Some(
        own + procs::descendants(pid)
            .into_iter()
            .filter_map(procs::rss_bytes)
            .sum::<u64>(),
    )
}

#[derive(Parser, Debug)]
#[command(name = "berth-shim", about = "Supervises one Berth app instance")]
struct Args {
    /// The instance's spec (JSON).
    #[arg(long)]
    spec: PathBuf,
}

/// Entry point of the `berth-shim` binary.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let spec = match spec::read_spec(&args.spec) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("berth-shim: reading spec {}: {e}", args.spec.display());
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    ExitCode::from(Supervisor::new(spec).run())
}

/// Empties the scratch dir and re-creates it owned by the app user, mode 0700.
fn prepare_scratch(spec: &Spec) -> std::io::Result<()> {
    let dir = &spec.scratch_dir;
    // It is removed recursively: refuse anything but an absolute, plain path at least two
    // levels deep that is not the bundle or above it.
    let plain = dir.is_absolute()
        && dir
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && dir.components().count() >= 3;
    if !plain || spec.cwd.starts_with(dir) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "refusing to empty it: not an absolute plain path two levels deep, or holds the cwd",
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(dir)?;
    if let Some(u) = spec.user {
        std::os::unix::fs::chown(dir, Some(u.uid), Some(u.gid))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => format!("{status}"),
    }
}

struct Supervisor {
    spec: Spec,
    state: State,
    shipper: Shipper,
    cgroup: Option<cgroup::Cgroup>,
    last_written: Instant,
}

impl Supervisor {
    fn new(spec: Spec) -> Supervisor {
        let shipper = Shipper::start(spec.log.clone(), &spec.app, &spec.version, &spec.instance);
        let state = State {
            shim_pid: std::process::id(),
            state: "starting".into(),
            ..State::default()
        };
        Supervisor {
            spec,
            state,
            shipper,
            cgroup: None,
            last_written: Instant::now(),
        }
    }

    fn write_state(&mut self) {
        let (shipped, dropped) = self.shipper.counters();
        self.state.log_shipped = shipped;
        self.state.log_dropped = dropped;
        self.state.updated_ms = now_ms();
        if let Err(e) = spec::write_state(&self.spec.state_file, &self.state) {
            eprintln!(
                "berth-shim: writing {}: {e}",
                self.spec.state_file.display()
            );
        }
        self.last_written = Instant::now();
    }

    fn set(&mut self, state: &str) {
        self.state.state = state.to_string();
        self.write_state();
    }

    /// Rewrites the state now and then while counters move.
    fn refresh(&mut self) {
        if self.last_written.elapsed() >= STATE_REFRESH {
            let (shipped, dropped) = self.shipper.counters();
            if shipped != self.state.log_shipped || dropped != self.state.log_dropped {
                self.write_state();
            }
        }
    }

    /// Sleeps up to `d`, waking early on a stop signal; true if stopped.
    fn sleep(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if stopping() {
                return true;
            }
            thread::sleep(POLL.min(until.saturating_duration_since(Instant::now())));
            self.refresh();
        }
        stopping()
    }

    fn run(mut self) -> u8 {
        self.write_state();
        if let Some(parent) = self.spec.limits.cgroup_parent.clone() {
            let (cg, err) = cgroup::setup(&parent, &self.spec.instance, &self.spec.limits);
            self.state.cgroup = cg.as_ref().map(|c| c.path());
            if let Some(e) = &err {
                eprintln!("berth-shim: cgroup: {e}");
            }
            self.state.cgroup_error = err;
            self.cgroup = cg;
        }
        let decision = match sandbox::decide(&self.spec) {
            Ok(d) => d,
            Err(why) => {
                self.state.sandbox = format!("none: {why}");
                self.state.last_exit = Some(format!("not started: {why}"));
                self.shipper
                    .shim_line("error", &format!("not started: {why}"));
                self.finish();
                return 2;
            }
        };
        self.state.sandbox = decision.describe();
        self.write_state();
        let cg = match (&self.state.cgroup, &self.state.cgroup_error) {
            (Some(p), None) => p.clone(),
            (Some(p), Some(e)) => format!("{p} ({e})"),
            (None, Some(e)) => format!("none ({e})"),
            (None, None) => "none".to_string(),
        };
        self.shipper.shim_line(
            "info",
            &format!(
                "supervising {:?}; sandbox: {}; cgroup: {cg}",
                self.spec.argv, self.state.sandbox
            ),
        );
        self.supervise(&decision);
        self.finish();
        0
    }

    /// Starts, watches and restarts the app until a stop signal.
    fn supervise(&mut self, decision: &Decision) {
        let policy = self.spec.restart;
        let mut backoff = Duration::from_millis(policy.initial_backoff_ms);
        let mut first = true;
        while !stopping() {
            if !first {
                self.state.restarts += 1;
            }
            first = false;
            self.state.child_pid = None;
            self.set("starting");
            let started = Instant::now();
            let outcome = match prepare_scratch(&self.spec) {
                Err(e) => Err(format!(
                    "spawn failed: scratch dir {}: {e}",
                    self.spec.scratch_dir.display()
                )),
                Ok(()) => child::spawn(&self.spec, decision, &self.shipper)
                    .map_err(|e| format!("spawn failed: {e}")),
            };
            let exit = match outcome {
                Ok(running) => {
                    self.state.child_pid = Some(running.pid as u32);
                    self.state.started_ms = now_ms();
                    self.set("running");
                    match self.watch(running) {
                        Some(exit) => exit,
                        None => return, // stopped
                    }
                }
                Err(e) => e,
            };
            self.state.child_pid = None;
            self.state.last_exit = Some(exit.clone());
            if stopping() {
                return;
            }
            if started.elapsed() >= Duration::from_millis(policy.stable_after_ms) {
                backoff = Duration::from_millis(policy.initial_backoff_ms);
            }
            let wait = backoff;
            backoff = (backoff * 2)
                .min(Duration::from_millis(policy.max_backoff_ms))
                .max(wait);
            self.shipper.shim_line(
                "warning",
                &format!("exited with {exit}; restarting in {}ms", wait.as_millis()),
            );
            self.set("backoff");
            if self.sleep(wait) {
                return;
            }
        }
    }

    /// Waits for the child; Some(how it exited), or None after a stop signal (the child is
    /// then stopped and reaped).
    fn watch(&mut self, mut running: Running) -> Option<String> {
        loop {
            if stopping() {
                self.stop_child(&mut running);
                return None;
            }
            match running.child.try_wait() {
                Ok(Some(status)) => {
                    // Whatever it left behind in its group (or cgroup) goes with it.
                    running.kill_leftovers();
                    if let Some(cg) = &self.cgroup {
                        cg.kill_others();
                    }
                    running.wait_readers(Duration::from_millis(500));
                    return Some(describe(status));
                }
                Ok(None) => {}
                Err(e) => {
                    running.signal(libc::SIGKILL);
                    let _ = running.child.wait();
                    return Some(format!("wait failed: {e}"));
                }
            }
            thread::sleep(POLL);
            self.refresh();
        }
    }

    /// SIGTERM to the app's group, up to `stop_grace_ms` for the whole group to exit, then
    /// SIGKILL for what is left.
    fn stop_child(&mut self, running: &mut Running) {
        self.set("stopping");
        self.shipper.shim_line("info", "stopping (SIGTERM)");
        running.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_millis(self.spec.stop_grace_ms);
        let mut status = None;
        while Instant::now() < deadline {
            if status.is_none() {
                status = running.child.try_wait().ok().flatten();
            }
            if status.is_some() && !procs::group_alive(running.pid) {
                break;
            }
            thread::sleep(POLL);
        }
        if status.is_some() {
            running.kill_leftovers();
        } else {
            running.signal(libc::SIGKILL);
        }
        if let Some(cg) = &self.cgroup {
            cg.kill_others();
        }
        let status = match status {
            Some(s) => Some(s),
            None => {
                let until = Instant::now() + Duration::from_secs(5);
                loop {
                    match running.child.try_wait() {
                        Ok(Some(s)) => break Some(s),
                        Ok(None) if Instant::now() < until => thread::sleep(POLL),
                        _ => break None,
                    }
                }
            }
        };
        running.wait_readers(Duration::from_millis(500));
        let exit = status.map_or("not reaped".to_string(), describe);
        self.shipper
            .shim_line("info", &format!("app ended with {exit}"));
        self.state.last_exit = Some(exit);
        self.state.child_pid = None;
    }

    /// Removes the cgroup, flushes the logs and writes the final state.
    fn finish(&mut self) {
        if stopping() && self.state.state != "stopping" {
            self.set("stopping");
        }
        if let Some(cg) = self.cgroup.take() {
            if let Err(e) = cg.remove() {
                eprintln!("berth-shim: cgroup: {e}");
                self.state.cgroup_error = Some(e);
            }
        }
        if stopping() {
            self.shipper.shim_line("info", "stopped");
        }
        self.shipper.close(LOG_FLUSH);
        self.state.child_pid = None;
        self.set("stopped");
    }
}
