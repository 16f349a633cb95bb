//! Starting, watching, stopping and re-adopting instances: each is a `berth-shim` process
//! started in its own session (so it outlives berthd), with its spec, state file, secrets
//! file and scratch directory in `<data_dir>/run/<app>/<instance>/`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};

use super::Engine;
use crate::daemon::store::{InstanceRecord, ReleaseRecord, VersionRecord};
use crate::shim;

/// The run directory of an instance.
pub fn instance_dir(data_dir: &Path, app: &str, id: &str) -> PathBuf {
    data_dir.join("run").join(app).join(id)
}

/// Whether a process is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // The state follows the last ')' (the command may hold spaces and parens).
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X') | None)
        }
        Err(_) => false,
    }
}

/// The shim's state, if its state file reads.
pub fn shim_state(rec: &InstanceRecord) -> Option<shim::State> {
    shim::read_state(&rec.dir.join("state.json")).ok()
}

/// Whether the instance's shim is running (its pid alive and its command line ours).
pub fn shim_alive(rec: &InstanceRecord) -> Option<u32> {
    let st = shim_state(rec)?;
    if st.state == "stopped" || !alive(st.shim_pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", st.shim_pid)).ok()?;
    let spec = rec.dir.join("spec.json");
    let needle = spec.to_string_lossy();
    let ours = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == needle.as_bytes());
    ours.then_some(st.shim_pid)
}

impl Engine {
    /// A free port for a new instance: in the configured range, not held by any instance
    /// record, and bindable now.
    pub(super) fn allocate_port(&self) -> anyhow::Result<u16> {
        let (lo, hi) = self.cfg.port_range()?;
        let used: HashSet<u16> = self
            .state
            .all_instances()
            .map_err(|e| anyhow!("{e}"))?
            .into_iter()
            .map(|i| i.port)
            .collect();
        let mut reserved = self.reserved_ports.lock();
        let span = u32::from(hi - lo) + 1;
        let start = rand::random::<u32>() % span;
        for k in 0..span {
            let port = lo + ((start + k) % span) as u16;
            if used.contains(&port) || reserved.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                reserved.insert(port);
                return Ok(port);
            }
        }
        Err(anyhow!(
            "no free port left in apps.ports {}: stop some instances or widen the range",
            self.cfg.apps.ports
        ))
    }

    /// The environment of the runtime contract for an instance.
    pub(super) fn instance_env(
        &self,
        version: &VersionRecord,
        release: &ReleaseRecord,
        id: &str,
        dir: &Path,
        port: Option<u16>,
    ) -> BTreeMap<String, String> {
        let app = &version.app;
        let s = &self.cfg.services;
        let m = &version.manifest;
        let mut env = BTreeMap::new();
        // The manifest's env, then the app's config over it (config vars override what the
        // bundle says, as on Heroku), then the runtime contract over both.
        env.extend(m.env.clone());
        env.extend(release.config.plain.clone());
        let wants = |svc: &str| m.services.iter().any(|s| s == svc);
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        set("BERTH_APP", app.clone());
        set("BERTH_VERSION", version.version.clone());
        set("BERTH_INSTANCE", id.to_string());
        set("BERTH_RELEASE", format!("v{}", release.number));
        set("BERTH_ENTRY", m.entry.clone());
        set(
            "BERTH_SCRATCH_DIR",
            dir.join("scratch").display().to_string(),
        );
        set(
            "BERTH_SECRETS_FILE",
            dir.join("secrets.toml").display().to_string(),
        );
        if wants("cache") {
            set("BERTH_CACHE_SERVERS", s.cache.clone());
        }
        if wants("blobs") {
            set("BERTH_BLOB_URL", s.blob_url.clone());
        }
        if wants("db") {
            set("BERTH_DB_HOST", s.db_host.clone());
            set("BERTH_DB_PORT", s.db_port.to_string());
            set("BERTH_DB_NAME", format!("app_{}", app.replace('-', "_")));
        }
        // Logging is the platform's, not an option: the runtime installs the system log
        // handler in every app (and the shim ships stdout/stderr there anyway).
        if !s.log_addr.is_empty() {
            set("BERTH_LOG_ADDR", s.log_addr.clone());
        }
        if let Some(port) = port {
            set("BERTH_BIND", format!("127.0.0.1:{port}"));
        }
        set("BERTH_PROCESSES", m.resources.processes.to_string());
        set("BERTH_THREADS", m.resources.threads.to_string());
        set("PATH", "/usr/local/bin:/usr/bin:/bin".into());
        set("HOME", dir.join("scratch").display().to_string());
        set("TMPDIR", dir.join("scratch").display().to_string());
        set("LANG", "C.UTF-8".into());
        set("PYTHONUNBUFFERED", "1".into());
        set("PYTHONDONTWRITEBYTECODE", "1".into());
        env
    }

    /// Writes the secrets file of an instance: the app's runtime token and its secrets,
    /// readable by the app's user only.
    pub(super) fn write_secrets_file(
        &self,
        app: &str,
        release: &ReleaseRecord,
        dir: &Path,
        user: Option<&shim::UserSpec>,
    ) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let run = self.state.run(app).map_err(|e| anyhow!("{e}"))?;
        let mut text = String::from("# Written by berthd for this instance; do not edit.\n");
        if let Some(sealed) = &run.runtime_token {
            let token = self.sealer.open(app, sealed)?;
            writeln!(text, "token = {}", toml::Value::String(token))?;
        }
        text.push_str("\n[secrets]\n");
        for (k, sealed) in &release.config.secrets {
            let v = self.sealer.open(app, sealed)?;
            writeln!(text, "{} = {}", toml_key(k), toml::Value::String(v))?;
        }
        let path = dir.join("secrets.toml");
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Some(u) = user {
            std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid))?;
        }
        Ok(())
    }

    /// Prepares and starts one instance of `release` (a shim in its own session); returns
    /// its record (stored by the caller).
    pub(super) async fn start_instance(
        &self,
        version: &VersionRecord,
        release: &ReleaseRecord,
        role: &str,
    ) -> anyhow::Result<InstanceRecord> {
        let app = &version.app;
        let n = {
            let mut run = self.state.run(app).map_err(|e| anyhow!("{e}"))?;
            let n = run.next_instance.max(1);
            run.next_instance = n + 1;
            self.state
                .commit(crate::daemon::store::Batch::new().run(&run))
                .map_err(|e| anyhow!("{e}"))?;
            n
        };
        let id = format!("{}-{n}", version.version);
        let dir = instance_dir(&self.cfg.data_dir, app, &id);
        let port = self.allocate_port()?;
        let user = self.app_user(app)?;
        std::fs::create_dir_all(dir.join("scratch"))
            .with_context(|| format!("creating {}", dir.display()))?;
        self.secure_dirs(app, user.as_ref())?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(dir.join("scratch"), Some(u.uid), Some(u.gid))?;
        }
        self.write_secrets_file(app, release, &dir, user.as_ref())?;
        let env = self.instance_env(version, release, &id, &dir, Some(port));
        let m = &version.manifest;
        let bundle = self.version_dir(app, &version.version);
        let argv = vec![
            self.cfg.apps.python.clone(),
            "-m".into(),
            "berth.runtime".into(),
            "serve".into(),
            m.entry.clone(),
            "--bind".into(),
            format!("127.0.0.1:{port}"),
            "--processes".into(),
            m.resources.processes.to_string(),
            "--threads".into(),
            m.resources.threads.to_string(),
        ];
        let spec = self.shim_spec(
            app,
            &version.version,
            &id,
            argv,
            env,
            &bundle,
            &dir,
            user,
            m,
        )?;
        let spec_path = dir.join("spec.json");
        std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
        self.spawn_shim(&dir)?;
        self.reserved_ports.lock().remove(&port);
        Ok(InstanceRecord {
            id,
            app: app.clone(),
            version: version.version.clone(),
            release: release.number,
            config_digest: release.config.digest(),
            port,
            dir,
            role: role.into(),
            created_ms: crate::daemon::state::now_ms(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn shim_spec(
        &self,
        app: &str,
        version: &str,
        id: &str,
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        bundle: &Path,
        dir: &Path,
        user: Option<shim::UserSpec>,
        m: &crate::manifest::Manifest,
    ) -> anyhow::Result<shim::Spec> {
        let tenant_limits = self.tenant_limits(app);
        let memory = m
            .resources
            .memory
            .as_u64()
            .saturating_mul(u64::from(m.resources.processes));
        let memory = match tenant_limits.max_memory {
            Some(cap) => memory.min(cap),
            None => memory,
        };
        let cpu = match tenant_limits.max_cpu {
            Some(cap) => m.resources.cpu.min(cap),
            None => m.resources.cpu,
        };
        let isolate = self.isolation_on();
        Ok(shim::Spec {
            app: app.into(),
            version: version.into(),
            instance: id.into(),
            argv,
            env,
            cwd: bundle.to_path_buf(),
            user,
            scratch_dir: dir.join("scratch"),
            state_file: dir.join("state.json"),
            limits: shim::Limits {
                memory_bytes: Some(memory),
                cpu: Some(cpu),
                pids: Some(256),
                nofile: Some(4096),
                cgroup_parent: isolate.then(|| format!("berth/{app}")),
            },
            sandbox: shim::Sandbox {
                mode: self.cfg.apps.sandbox,
                hide: vec![self.cfg.data_dir.clone()],
                read_only: self.sandbox_read_only(bundle, dir),
            },
            log: self.log_target(app),
            restart: shim::RestartPolicy {
                initial_backoff_ms: 200,
                max_backoff_ms: 30_000,
                stable_after_ms: 10_000,
            },
            stop_grace_ms: m.drain.as_duration().as_millis() as u64,
        })
    }

    /// What the sandbox re-binds read-only over its fresh /tmp and the hidden data dir: the
    /// bundle, the secrets file, and the runtime's environment (`apps.python`'s venv root,
    /// which may itself live under /tmp).
    fn sandbox_read_only(&self, bundle: &Path, dir: &Path) -> Vec<PathBuf> {
        let mut ro = vec![bundle.to_path_buf(), dir.join("secrets.toml")];
        let python = Path::new(&self.cfg.apps.python);
        if python.is_absolute() {
            if let Some(root) = python.parent().and_then(Path::parent) {
                if root != Path::new("/") && root != Path::new("/usr") {
                    ro.push(root.to_path_buf());
                }
            }
        }
        ro
    }

    /// Starts `berth-shim --spec DIR/spec.json` in a session of its own, its output in
    /// `DIR/shim.log`; reaps it in the background.
    pub(super) fn spawn_shim(&self, dir: &Path) -> anyhow::Result<u32> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("shim.log"))?;
        let _ = std::fs::remove_file(dir.join("state.json"));
        let mut cmd = std::process::Command::new(self.cfg.shim_path());
        cmd.arg("--spec")
            .arg(dir.join("spec.json"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it puts
        // the shim in its own session so berthd's end (or a Ctrl-C to berthd's terminal)
        // does not reach the apps.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.cfg.shim_path().display()))?;
        let pid = child.id();
        std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                let _ = child.wait();
            })?;
        Ok(pid)
    }

    /// Stops an instance: SIGTERM to its shim (which gives the app `drain`), then waits for
    /// the shim to end (SIGKILL after `grace` more), and removes its run directory.
    pub(super) async fn stop_instance(&self, rec: &InstanceRecord, grace: Duration) {
        self.halt_instance(rec, grace).await;
        let _ = std::fs::remove_dir_all(&rec.dir);
        let _ = self
            .state
            .commit(crate::daemon::store::Batch::new().remove_instance(&rec.app, &rec.id));
        self.health.lock().remove(&health_key(&rec.app, &rec.id));
    }

    /// Stops an instance's processes but keeps its record and run directory (berthd's
    /// `stop_apps_on_exit`: the next start brings it back).
    pub(super) async fn halt_instance(&self, rec: &InstanceRecord, grace: Duration) {
        if let Some(pid) = shim_alive(rec) {
            // SAFETY: kill(2) with a pid we read from the shim's state and checked is ours.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
            let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(3);
            while alive(pid) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            if alive(pid) {
                tracing::warn!(instance = %rec.id, "shim did not stop in time; killing it");
                // SAFETY: as above.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
    }
}

/// The key of an instance in the health map.
pub fn health_key(app: &str, id: &str) -> String {
    format!("{app}/{id}")
}

/// A config key as a TOML key.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}
