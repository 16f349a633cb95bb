//! `berth validate [DIR]`: the deploy gates that need no server, run locally and offline:
//! the manifest, the bundle (pure Python, no links, size limits), and the import gate (the
//! entry point imports and is a WSGI callable, run by `python -m berth.runtime check`).

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::bundle::{self, Bundle, Limits};
use crate::manifest::{Manifest, ManifestError, MANIFEST_FILE};

/// `berth validate` arguments.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The app's directory, holding berth.toml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The Python that runs apps (it must have the berth package), for the import gate.
    #[arg(
        long,
        value_name = "PATH",
        env = "BERTH_PYTHON",
        default_value = "python3"
    )]
    pub python: String,
    /// Skip the import gate (then no Python is needed).
    #[arg(long)]
    pub no_import: bool,
    /// Seconds the import gate may take.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub import_timeout: u64,
    /// Files per bundle at most.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_files)]
    pub max_files: usize,
    /// Bytes per bundled file at most.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_file_bytes)]
    pub max_file_bytes: u64,
    /// Bytes per bundle at most (berthd's own limit is its apps.max_bundle_bytes).
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_total_bytes)]
    pub max_bundle_bytes: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// How one gate went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing wrong.
    Passed,
    /// Something to look at that does not stop a deploy.
    Warning,
    /// Stops a deploy.
    Failed,
    /// Not run (an earlier gate failed, or it was turned off).
    Skipped,
}

/// One finding of a gate.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Where: a manifest key, a file, or empty.
    #[serde(rename = "where")]
    pub at: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// One gate's result.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// `manifest`, `bundle` or `import`.
    pub gate: &'static str,
    /// How it went.
    pub status: Status,
    /// A one-line summary.
    pub summary: String,
    /// The details.
    pub findings: Vec<Finding>,
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Whether a deploy would pass these gates.
    pub ok: bool,
    /// The directory validated.
    pub dir: String,
    /// The app's name, version and entry point, when the manifest could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The entry point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// The bundle's digest, when it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Each gate in order.
    pub gates: Vec<Gate>,
}

/// Runs every gate on `args.dir`.
pub fn validate(args: &ValidateArgs) -> Report {
    let limits = Limits {
        max_files: args.max_files,
        max_file_bytes: args.max_file_bytes,
        max_total_bytes: args.max_bundle_bytes,
    };
    let mut gates = Vec::new();
    let manifest = match Manifest::load(&args.dir) {
        Ok(m) => {
            gates.push(Gate {
                gate: "manifest",
                status: Status::Passed,
                summary: format!(
                    "{MANIFEST_FILE}: {} {}, entry {}, {} process(es) x {} thread(s)",
                    m.name, m.version, m.entry, m.resources.processes, m.resources.threads
                ),
                findings: vec![],
            });
            Some(m)
        }
        Err(e) => {
            let findings = match &e {
                ManifestError::Invalid { problems, .. } => problems
                    .iter()
                    .map(|p| Finding {
                        at: p.key.clone(),
                        message: p.message.clone(),
                    })
                    .collect(),
                other => vec![Finding {
                    at: MANIFEST_FILE.into(),
                    message: match other {
                        ManifestError::Read { source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            format!(
                                "not found in {}: every app needs one (see docs/deploy/manifest.md)",
                                args.dir.display()
                            )
                        }
                        ManifestError::Parse { message, .. } => message.clone(),
                        other => other.to_string(),
                    },
                }],
            };
            gates.push(Gate {
                gate: "manifest",
                status: Status::Failed,
                summary: format!("{MANIFEST_FILE} is not valid"),
                findings,
            });
            None
        }
    };
    let bundle = match bundle::collect(&args.dir, &limits) {
        Ok(b) => {
            let mut findings = Vec::new();
            let mut status = Status::Passed;
            if let Some(m) = &manifest {
                if !bundle::has_module(&b, &m.entry) {
                    status = Status::Failed;
                    let module = m.entry.split(':').next().unwrap_or_default();
                    findings.push(Finding {
                        at: "entry".into(),
                        message: format!(
                            "the bundle has no module {module:?} ({}.py or {}/__init__.py)",
                            module.replace('.', "/"),
                            module.replace('.', "/")
                        ),
                    });
                }
            }
            gates.push(Gate {
                gate: "bundle",
                status,
                summary: format!(
                    "{} file(s), {} bytes, {}",
                    b.files.len(),
                    b.total_bytes,
                    b.digest
                ),
                findings,
            });
            (status == Status::Passed).then_some(b)
        }
        Err(problems) => {
            gates.push(Gate {
                gate: "bundle",
                status: Status::Failed,
                summary: "the directory cannot be deployed as it is".into(),
                findings: problems
                    .into_iter()
                    .map(|p| Finding {
                        at: p.path,
                        message: p.message,
                    })
                    .collect(),
            });
            None
        }
    };
    gates.push(match (&manifest, &bundle) {
        _ if args.no_import => skipped("--no-import was given"),
        (Some(m), Some(b)) => import_gate(m, b, &args.python, args.import_timeout),
        _ => skipped("needs a valid manifest and bundle"),
    });
    Report {
        ok: gates.iter().all(|g| g.status != Status::Failed),
        dir: args.dir.display().to_string(),
        app: manifest.as_ref().map(|m| m.name.clone()),
        version: manifest.as_ref().map(|m| m.version.clone()),
        entry: manifest.as_ref().map(|m| m.entry.clone()),
        digest: bundle.as_ref().map(|b| b.digest.clone()),
        gates,
    }
}

fn skipped(why: &str) -> Gate {
    Gate {
        gate: "import",
        status: Status::Skipped,
        summary: why.into(),
        findings: vec![],
    }
}

/// Runs `python -m berth.runtime check ENTRY` in the app's directory with a clean
/// environment: the runtime contract's identity, the manifest's env, no secrets.
fn import_gate(m: &Manifest, b: &Bundle, python: &str, timeout: u64) -> Gate {
    let home = std::env::temp_dir();
    // The gate runs in the app's directory: a relative interpreter path means from here.
    let program = if python.contains('/') {
        std::path::absolute(python).unwrap_or_else(|_| PathBuf::from(python))
    } else {
        PathBuf::from(python)
    };
    let mut cmd = Command::new(program);
    cmd.args(["-m", "berth.runtime", "check", &m.entry])
        .current_dir(&b.root)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("LANG", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .env("BERTH_APP", &m.name)
        .env("BERTH_VERSION", &m.version)
        .env("BERTH_INSTANCE", format!("{}-validate", m.name))
        .envs(&m.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let failed = |summary: String, message: String| Gate {
        gate: "import",
        status: Status::Failed,
        summary,
        findings: vec![Finding {
            at: m.entry.clone(),
            message,
        }],
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return failed(
                format!("cannot run {python}"),
                format!(
                    "{e}: point --python (or BERTH_PYTHON) at the Python that runs apps, with \
                     the berth package installed (scripts/run makes .venv), or pass --no-import"
                ),
            )
        }
    };
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    let err = reader.join().unwrap_or_default();
    let detail = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("berth.runtime: ")
        .trim_start_matches(&format!("{}: ", m.entry))
        .to_string();
    match status.and_then(|s| s.code()) {
        Some(0) => Gate {
            gate: "import",
            status: Status::Passed,
            summary: format!("{} imports and is callable", m.entry),
            findings: vec![],
        },
        Some(2) => Gate {
            gate: "import",
            status: Status::Warning,
            summary: format!(
                "{} imports but stops on configuration it needs at startup",
                m.entry
            ),
            findings: vec![Finding {
                at: m.entry.clone(),
                message: format!(
                    "{detail} (set it with `berth config set` before the deploy; the \
                     deploy's import gate runs with the app's configuration)"
                ),
            }],
        },
        Some(_) if detail.contains("No module named 'berth'") => failed(
            format!("{python} has no berth package"),
            format!("{detail}: use the Python that runs apps (--python, BERTH_PYTHON)"),
        ),
        Some(_) => failed(format!("{} does not import", m.entry), detail),
        None => failed(
            format!("{} did not finish importing", m.entry),
            format!("the import took over {timeout}s (work at import time belongs in the first request or the release command)"),
        ),
    }
}

/// Prints the report, human-readable or JSON; exit 0 when valid, 1 when not.
pub fn run(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let report = validate(args);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The human form of a report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    match (&report.app, &report.version) {
        (Some(app), Some(version)) => {
            out.push_str(&format!("{app} {version} ({})\n", report.dir));
        }
        _ => out.push_str(&format!("{}\n", report.dir)),
    }
    for g in &report.gates {
        let mark = match g.status {
            Status::Passed => "ok  ",
            Status::Warning => "warn",
            Status::Failed => "FAIL",
            Status::Skipped => "skip",
        };
        out.push_str(&format!("  [{mark}] {:<8} {}\n", g.gate, g.summary));
        for f in &g.findings {
            if f.at.is_empty() {
                out.push_str(&format!("           - {}\n", f.message));
            } else {
                out.push_str(&format!("           - {}: {}\n", f.at, f.message));
            }
        }
    }
    out.push_str(if report.ok {
        "valid: these gates pass; a deploy then starts it and checks its health\n"
    } else {
        "not valid: fix the FAIL lines above\n"
    });
    out
}
