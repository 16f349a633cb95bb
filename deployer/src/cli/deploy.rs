//! `berth deploy [DIR]`: the local checks (manifest and bundle gates), the bundle packed as a
//! deterministic tar and uploaded to berthd (`Deploys.UploadBundle`), then `Deploys.Deploy`
//! with its progress shown phase by phase.
//!
//! The progress rendering here is shared by every verb that changes what runs (`promote`,
//! `rollback`, `scale`, `restart`, `config set`/`unset`): see [`follow`].
//!
//! Output: progress lines go to stderr (`==> PHASE: MESSAGE`, or a spinner per phase when
//! stderr is a terminal), the result line to stdout. With `--json`, stdout carries one JSON
//! object per progress message and a final summary object (JSON lines), nothing else.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use berth_api::v1 as api;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tonic::Status;

use super::control::{failed, when, Client, Conn, Svc};
use super::validate::{self, ValidateArgs};
use crate::bundle::{self, Limits};
use crate::manifest::{Manifest, MANIFEST_FILE};
use crate::tarball;

/// Bytes of bundle per `BundleChunk` message.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// `berth deploy` arguments.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app's directory, holding berth.toml (its `name` is the app).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Start and check the new version but leave the live one live (`berth promote` it later).
    #[arg(long)]
    pub no_promote: bool,
    /// Allow a version lower than the live one.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Why, for the audit history.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// Do not run the manifest and bundle gates here (berthd runs them anyway).
    #[arg(long)]
    pub skip_local_checks: bool,
    #[command(flatten)]
    pub conn: Conn,
}

/// A `Deploys` client on the connection.
pub(crate) fn deploys(c: &Client) -> api::deploys_client::DeploysClient<Svc> {
    api::deploys_client::DeploysClient::with_interceptor(c.channel.clone(), c.auth.clone())
}

/// The bundle ready to upload.
struct Packed {
    app: String,
    version: String,
    tar: Vec<u8>,
    sha256: String,
}

/// Runs `berth deploy`.
pub fn run(args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let json = args.conn.json;
    let mut out = Renderer::new(json);
    let packed = match prepare(args, &mut out) {
        Ok(Ok(p)) => p,
        Ok(Err(code)) => return Ok(code),
        Err(e) => return Err(out.fail("", e)),
    };
    let app = packed.app.clone();
    let c = Client::connect(&args.conn).map_err(|e| out.fail(&app, e))?;
    let size = packed.tar.len() as u64;
    let bar = upload_bar(size, json);
    let stream = futures_util::stream::iter(chunks(&packed.app, &packed.sha256, packed.tar)).map({
        let bar = bar.clone();
        move |chunk| {
            bar.inc(chunk.data.len() as u64);
            chunk
        }
    });
    let uploaded = c.rt.block_on(deploys(&c).upload_bundle(stream));
    bar.finish_and_clear();
    let uploaded = match uploaded {
        Ok(r) => r.into_inner(),
        Err(s) => return Err(out.fail(&app, failed(s))),
    };
    out.local(
        "upload",
        &format!(
            "{}, sha256 {}{}",
            human_bytes(size),
            &packed.sha256[..12],
            if uploaded.existed {
                " (berthd had it already)"
            } else {
                ""
            }
        ),
    );
    let req = api::DeployRequest {
        app: app.clone(),
        bundle_sha256: packed.sha256.clone(),
        no_promote: args.no_promote,
        allow_downgrade: args.allow_downgrade,
        reason: args.reason.clone(),
    };
    let kind = Kind::Deploy {
        version: packed.version.clone(),
        no_promote: args.no_promote,
    };
    follow(&c, &app, &kind, out, async {
        deploys(&c).deploy(req).await
    })
}

/// The local checks and the packing; `Err(code)` when a check failed (already reported).
fn prepare(args: &DeployArgs, out: &mut Renderer) -> anyhow::Result<Result<Packed, ExitCode>> {
    let dir = &args.dir;
    let limits = if args.skip_local_checks {
        Limits {
            max_files: usize::MAX,
            max_file_bytes: u64::MAX,
            max_total_bytes: u64::MAX,
        }
    } else {
        Limits::default()
    };
    let (app, version) = if args.skip_local_checks {
        name_and_version(dir)?
    } else {
        let d = Limits::default();
        let mut report = validate::validate(&ValidateArgs {
            dir: dir.clone(),
            python: "python3".into(),
            no_import: true,
            import_timeout: 0,
            max_files: d.max_files,
            max_file_bytes: d.max_file_bytes,
            max_bundle_bytes: d.max_total_bytes,
            json: false,
        });
        if let Some(g) = report.gates.iter_mut().find(|g| g.gate == "import") {
            g.summary = "runs in berthd on deploy".into();
        }
        if !report.ok {
            let error = format!(
                "the local checks failed; nothing was uploaded (fix the FAIL lines, `berth \
                 validate {}` shows them again)",
                dir.display()
            );
            if out.json {
                out.emit(&json!({"phase": "check", "message": "local checks failed",
                    "current": 0, "total": 0, "done": true, "noop": false, "error": error,
                    "release": null, "report": report}));
                out.emit(&summary_json(
                    report.app.as_deref().unwrap_or(""),
                    "failed",
                    None,
                    &[],
                    &error,
                ));
            } else {
                eprint!("{}", validate::render(&report));
                eprintln!("berth: {error}");
            }
            return Ok(Err(ExitCode::FAILURE));
        }
        let m = Manifest::load(dir)?;
        (m.name, m.version)
    };
    let b = bundle::collect(dir, &limits).map_err(|problems| {
        anyhow!(
            "{} cannot be packed: {}",
            dir.display(),
            problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    let tar = tarball::pack(&b).with_context(|| format!("packing {}", dir.display()))?;
    let sha256 = hex::encode(Sha256::digest(&tar));
    out.local(
        "check",
        &format!(
            "{app} {version}: {} file(s), {}{}",
            b.files.len(),
            human_bytes(b.total_bytes),
            if args.skip_local_checks {
                " (local checks skipped)"
            } else {
                ", manifest and bundle gates pass"
            }
        ),
    );
    Ok(Ok(Packed {
        app,
        version,
        tar,
        sha256,
    }))
}

/// The app's name and version read from berth.toml without the manifest's checks.
fn name_and_version(dir: &Path) -> anyhow::Result<(String, String)> {
    let path = dir.join(MANIFEST_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let field = |k: &str| doc.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let name = field("name").ok_or_else(|| anyhow!("{} has no `name`", path.display()))?;
    Ok((name, field("version").unwrap_or_default()))
}

/// The upload's messages: the first carries `app`, `sha256`, `size` and the first chunk of
/// data, every later one only data, [`CHUNK_BYTES`] at a time (at least one message).
pub fn chunks(
    app: &str,
    sha256: &str,
    data: Vec<u8>,
) -> impl Iterator<Item = api::BundleChunk> + Send + 'static {
    let size = data.len();
    let count = size.div_ceil(CHUNK_BYTES).max(1);
    let data = Arc::new(data);
    let (app, sha256) = (app.to_string(), sha256.to_string());
    (0..count).map(move |i| {
        let start = i * CHUNK_BYTES;
        let end = (start + CHUNK_BYTES).min(size);
        let first = i == 0;
        api::BundleChunk {
            app: if first { app.clone() } else { String::new() },
            sha256: if first { sha256.clone() } else { String::new() },
            size: if first { size as u64 } else { 0 },
            data: data[start..end].to_vec(),
        }
    })
}

fn upload_bar(size: u64, json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "==> upload: [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

// -- progress of a change ---------------------------------------------------------------------

/// What change a progress stream reports, for the final line.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// `berth deploy`: the manifest's version.
    Deploy { version: String, no_promote: bool },
    /// `berth promote`, `berth rollback`.
    Release,
    /// `berth config set`/`unset`.
    Config,
    /// `berth scale`.
    Scale { instances: u32 },
    /// `berth restart`.
    Restart,
}

impl Kind {
    /// The result's summary word in JSON.
    fn result(&self, p: &api::Progress) -> &'static str {
        match self {
            _ if p.noop => "noop",
            Kind::Deploy {
                no_promote: true, ..
            } => "ready",
            Kind::Scale { .. } => "scaled",
            Kind::Restart => "restarted",
            _ if p.release.is_none() => "saved",
            _ => "released",
        }
    }

    /// The human result line after a successful end (`done` without `error`).
    pub(crate) fn line(&self, app: &str, p: &api::Progress, urls: &[String]) -> String {
        let r = p.release.clone().unwrap_or_default();
        let version = match (self, r.version.is_empty()) {
            (Kind::Deploy { version, .. }, true) => version.clone(),
            _ => r.version.clone(),
        };
        let subject = if version.is_empty() {
            app.to_string()
        } else {
            format!("{app} {version}")
        };
        let at = if urls.is_empty() {
            String::new()
        } else {
            format!(" at {}", urls.join(" "))
        };
        match self {
            Kind::Deploy { .. } | Kind::Release if p.noop => {
                format!("{subject} is already live with the same content; nothing to do")
            }
            Kind::Config if p.noop => {
                format!("{app}'s config already is so; nothing to do")
            }
            Kind::Scale { instances } if p.noop => {
                format!("{app} already runs {instances} instance(s); nothing to do")
            }
            Kind::Restart if p.noop => format!("{app}: nothing to restart"),
            Kind::Deploy {
                no_promote: true, ..
            } => format!(
                "{app} {version} is started and checked but not live: `berth promote {app} \
                 {version}` makes it live"
            ),
            // No release to show (scaling before the first deploy, a config change with
            // nothing live): berthd's own words.
            Kind::Scale { .. } | Kind::Restart | Kind::Config
                if p.release.is_none() && !p.message.is_empty() =>
            {
                p.message.clone()
            }
            Kind::Scale { instances } => format!(
                "Scaled {app} to {instances} instance(s) of {} ({version})",
                r.id
            ),
            Kind::Restart => format!("Restarted {app}: {} ({version}) is live{at}", r.id),
            Kind::Config if p.release.is_none() => format!(
                "Saved; {app} has no live release yet: its next deploy runs with this config"
            ),
            Kind::Deploy { .. } | Kind::Release | Kind::Config => {
                format!("Released {}: {subject} is live{at}", r.id)
            }
        }
    }
}

/// Shows a change's progress stream (started by `start`) to its end, then the result:
/// exit 0 on success or no-op, an error (exit 1) with berthd's message on failure.
pub(crate) fn follow<F>(
    c: &Client,
    app: &str,
    kind: &Kind,
    mut out: Renderer,
    start: F,
) -> anyhow::Result<ExitCode>
where
    F: Future<Output = Result<tonic::Response<tonic::Streaming<api::Progress>>, Status>>,
{
    let last = c.rt.block_on(async {
        let mut stream = start.await?.into_inner();
        while let Some(p) = stream.message().await? {
            out.progress(&p);
            if p.done {
                return Ok(Some(p));
            }
        }
        Ok::<_, Status>(None)
    });
    out.finish();
    let last = match last {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(out.fail(
                app,
                anyhow!(
                    "berthd ended the stream before the change finished: `berth status {app}` \
                     shows where it is"
                ),
            ))
        }
        Err(s) => return Err(out.fail(app, failed(s))),
    };
    if !last.error.is_empty() {
        return Err(out.fail(app, anyhow!("{}", last.error)));
    }
    let urls = if last.noop || last.release.is_none() {
        vec![]
    } else {
        c.rt.block_on(deploys(c).status(api::StatusRequest { app: app.into() }))
            .map(|r| r.into_inner().urls)
            .unwrap_or_default()
    };
    let said = kind.line(app, &last, &urls);
    if out.json {
        let mut summary = summary_json(app, kind.result(&last), last.release.as_ref(), &urls, "");
        summary["message"] = said.into();
        out.emit(&summary);
    } else {
        println!("{said}");
    }
    Ok(ExitCode::SUCCESS)
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// JSON lines on stdout.
    Json,
    /// A spinner per phase on stderr (a terminal).
    Tty,
    /// `==> phase: message` lines on stderr.
    Plain,
}

/// Renders progress messages as they come.
pub(crate) struct Renderer {
    mode: Mode,
    json: bool,
    spinner: Option<(String, ProgressBar)>,
    last: Option<String>,
}

impl Renderer {
    /// JSON lines with `json`, else a spinner when stderr is a terminal, else plain lines.
    pub(crate) fn new(json: bool) -> Renderer {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Tty
        } else {
            Mode::Plain
        };
        Renderer {
            mode,
            json,
            spinner: None,
            last: None,
        }
    }

    /// Prints one JSON line on stdout.
    fn emit(&self, v: &Value) {
        println!("{v}");
    }

    /// A phase run here (local checks, the upload), shown like berthd's.
    fn local(&mut self, phase: &str, message: &str) {
        self.progress(&api::Progress {
            phase: phase.into(),
            message: message.into(),
            ..Default::default()
        });
    }

    /// Shows one message.
    pub(crate) fn progress(&mut self, p: &api::Progress) {
        match self.mode {
            Mode::Json => self.emit(&progress_json(p)),
            _ if p.done && (p.phase == "done" || p.message.is_empty()) => {}
            Mode::Plain => {
                let text = line(p);
                if self.last.as_ref() != Some(&text) {
                    eprintln!("{text}");
                    self.last = Some(text);
                }
            }
            Mode::Tty => {
                let msg = line(p)
                    .trim_start_matches(&format!("==> {}: ", p.phase))
                    .to_string();
                match &self.spinner {
                    Some((phase, bar)) if *phase == p.phase => bar.set_message(msg),
                    _ => {
                        self.finish();
                        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                        if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                        {
                            bar.set_style(style);
                        }
                        bar.set_prefix(p.phase.clone());
                        bar.set_message(msg);
                        bar.enable_steady_tick(Duration::from_millis(100));
                        self.spinner = Some((p.phase.clone(), bar));
                    }
                }
            }
        }
    }

    /// Ends the current phase's spinner, leaving its `==>` line.
    fn finish(&mut self) {
        if let Some((_, bar)) = self.spinner.take() {
            if let Ok(style) = ProgressStyle::with_template("==> {prefix}: {msg}") {
                bar.set_style(style);
            }
            bar.finish();
        }
    }

    /// Reports a failure: with `--json`, a summary object on stdout; the error itself goes
    /// back to `main` (stderr, exit 1).
    fn fail(&mut self, app: &str, error: anyhow::Error) -> anyhow::Error {
        self.finish();
        if self.json {
            self.emit(&summary_json(
                app,
                "failed",
                None,
                &[],
                &format!("{error:#}"),
            ));
        }
        error
    }
}

/// The plain line of one message: `==> PHASE: MESSAGE` with ` (CURRENT/TOTAL)` when the
/// phase has a known length.
pub(crate) fn line(p: &api::Progress) -> String {
    let mut s = format!("==> {}: {}", p.phase, p.message);
    if p.total > 0 {
        s.push_str(&format!(" ({}/{})", p.current, p.total));
    }
    s
}

/// A release as JSON.
pub(crate) fn release_json(r: &api::Release) -> Value {
    json!({
        "id": r.id, "number": r.number, "version": r.version, "created": when(r.created_ms),
        "created_ms": r.created_ms, "actor": r.actor, "description": r.description,
        "config_keys": r.config_keys, "secret_keys": r.secret_keys, "state": r.state,
        "config_digest": r.config_digest,
    })
}

/// One progress message as JSON (every field, `release` null when absent).
pub(crate) fn progress_json(p: &api::Progress) -> Value {
    json!({
        "phase": p.phase, "message": p.message, "current": p.current, "total": p.total,
        "done": p.done, "noop": p.noop, "error": p.error,
        "release": p.release.as_ref().map(release_json),
    })
}

/// The last JSON line of a change.
fn summary_json(
    app: &str,
    result: &str,
    release: Option<&api::Release>,
    urls: &[String],
    error: &str,
) -> Value {
    json!({
        "result": result, "ok": result != "failed", "app": app,
        "release": release.map(release_json), "urls": urls, "error": error, "message": "",
    })
}

/// Bytes for people: `512 B`, `12.2 KiB`, `48.0 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod wire_tests;
