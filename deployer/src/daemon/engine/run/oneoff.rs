//! One-off runs of an app's command (imports, migrations) in its sandbox.

use std::time::Duration;

use anyhow::anyhow;

use super::{tail_lines, RemoveOnDrop};
use crate::daemon::engine::Engine;
use crate::daemon::store::{ReleaseRecord, VersionRecord};

impl Engine {
    /// Runs `argv` once for `release` of `version`: as the app's user, in the bundle, with
    /// the runtime contract's environment; its exit and output.
    pub(super) async fn run_once(
        &self,
        version: &VersionRecord,
        release: &ReleaseRecord,
        argv: Vec<String>,
        timeout: Duration,
    ) -> anyhow::Result<OneOff> {
        let app = &version.app;
        let dir = self
            .cfg
            .data_dir
            .join("run")
            .join(app)
            .join(format!("once-{}", rand::random::<u32>()));
        std::fs::create_dir_all(dir.join("scratch"))?;
        let _cleanup = RemoveOnDrop(dir.clone());
        let user = self.app_user(app)?;
        self.secure_dirs(app, user.as_ref())?;
        if let Some(u) = &user {
            std::os::unix::fs::chown(dir.join("scratch"), Some(u.uid), Some(u.gid))?;
        }
        self.write_secrets_file(app, release, &dir, user.as_ref())?;
        let env = self.instance_env(version, release, "once", &dir, None);
        let bundle = self.version_dir(app, &version.version);
        let spec = self.shim_spec(
            app,
            &version.version,
            "once",
            argv,
            env,
            &bundle,
            &dir,
            user,
            &version.manifest,
        )?;
        let mut cmd = one_off_command(&spec)?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| anyhow!("starting {}: {e}", spec.argv[0]))?;
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).to_string();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                let text = tail_lines(&text, 40);
                Ok(OneOff {
                    ok: out.status.success(),
                    status: describe_exit(&out.status),
                    output: text,
                })
            }
            Ok(Err(e)) => Err(anyhow!("running {}: {e}", spec.argv.join(" "))),
            Err(_) => Ok(OneOff {
                ok: false,
                status: format!("no end within {}s", timeout.as_secs()),
                output: String::new(),
            }),
        }
    }
}

/// The command of a one-off run: the shim's sandbox decision and privilege drop, without
/// the supervision (no restart; berthd waits for it).
pub(super) fn one_off_command(spec: &crate::shim::Spec) -> anyhow::Result<tokio::process::Command> {
    use crate::shim::sandbox::{bwrap_argv, decide, Decision};
    let argv: Vec<std::ffi::OsString> = match decide(spec).map_err(|e| anyhow!("{e}"))? {
        Decision::Bwrap(bwrap) => bwrap_argv(&bwrap, spec),
        Decision::None(_) => spec.argv.iter().map(Into::into).collect(),
    };
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(&spec.env)
        .current_dir(&spec.cwd);
    crate::shim::child::drop_privileges(&mut cmd, spec.user, spec.limits.nofile);
    Ok(tokio::process::Command::from(cmd))
}

pub(super) struct OneOff {
    pub(super) ok: bool,
    pub(super) status: String,
    pub(super) output: String,
}

pub(super) fn describe_exit(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "ended".into(),
    }
}
