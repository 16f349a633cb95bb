//! `berth.toml`, the app's manifest: parsed strictly (unknown keys are errors) and checked
//! completely, so one `berth validate` lists every problem with what to fix.
//!
//! The reference is `docs/deploy/manifest.md`; keep the two in step.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use berth_common::config::{ByteSize, HumanDuration};
use berth_common::tenants::AppName;
use serde::{Deserialize, Serialize};

/// The manifest's file name, at the root of the app's directory.
pub const MANIFEST_FILE: &str = "berth.toml";

/// The services an app may ask for.
pub const SERVICES: [&str; 4] = ["cache", "blobs", "db", "logs"];

/// The manifest as written (after defaults), and valid once [`Manifest::check`] said so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The app's name (the tenant it deploys to).
    pub name: String,
    /// A semantic version (`1.4.0`, `2.0.0-rc.1`); versions are ordered by semver.
    pub version: String,
    /// The WSGI callable, `module:attribute` (dotted both sides allowed).
    pub entry: String,
    /// Run once per release after the import gate and before the new version starts
    /// (migrations); a shell-free argv split on whitespace.
    #[serde(default)]
    pub release: Option<String>,
    /// How long the old version gets to finish its requests after the switch.
    #[serde(default = "default_drain")]
    pub drain: HumanDuration,
    /// The health check the new version must pass before it goes live.
    #[serde(default)]
    pub health: Health,
    /// Requests the new version must answer as expected before it goes live.
    #[serde(default)]
    pub smoke: Vec<Smoke>,
    /// What the app's processes get (capped by the operator's limits for the app).
    #[serde(default)]
    pub resources: Resources,
    /// The Berth services the app uses (default: all).
    #[serde(default = "default_services")]
    pub services: Vec<String>,
    /// Ordinary, non-secret configuration, as environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Path requested (GET) on the new version.
    pub path: String,
    /// The status it must answer.
    pub status: u16,
    /// Time between checks (sub-second allowed, e.g. "200ms").
    pub interval: HumanDuration,
    /// How long one check may take.
    pub timeout: HumanDuration,
    /// Consecutive passes before the version counts as healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures before a live version counts as unhealthy (and is rolled back
    /// within the watch window).
    pub unhealthy_threshold: u32,
    /// How long a new version may take to start and pass its first checks.
    pub start_timeout: HumanDuration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            path: "/".into(),
            status: 200,
            interval: HumanDuration(Duration::from_millis(250)),
            timeout: HumanDuration(Duration::from_secs(2)),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            start_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// One `[[smoke]]` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    /// Path requested.
    pub path: String,
    /// `GET` (default) or `HEAD`: smoke requests must not change anything.
    #[serde(default = "default_method")]
    pub method: String,
    /// The status it must answer (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Text the body must contain.
    #[serde(default)]
    pub contains: Option<String>,
}

/// `[resources]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// WSGI worker processes.
    pub processes: u32,
    /// Threads per process.
    pub threads: u32,
    /// Memory per process.
    pub memory: ByteSize,
    /// CPUs for all processes together (e.g. 0.5).
    pub cpu: f64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            processes: 1,
            threads: 8,
            memory: ByteSize::mib(256),
            cpu: 1.0,
        }
    }
}

fn default_drain() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_services() -> Vec<String> {
    SERVICES.iter().map(|s| s.to_string()).collect()
}

fn default_method() -> String {
    "GET".into()
}

fn default_status() -> u16 {
    200
}

/// One thing wrong with a manifest: where (a key path) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key, e.g. `version` or `health.interval`.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or a key the manifest does not have, or a value of the wrong type.
    #[error("{path} is not a valid manifest: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Parsed, but some values are not acceptable.
    #[error("{path} has {} problem(s):\n  {}", problems.len(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl Manifest {
    /// Reads and checks `DIR/berth.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: shown.clone(),
            source,
        })?;
        let manifest = Manifest::parse(&text).map_err(|message| ManifestError::Parse {
            path: shown.clone(),
            message,
        })?;
        let problems = manifest.check();
        if problems.is_empty() {
            Ok(manifest)
        } else {
            Err(ManifestError::Invalid {
                path: shown,
                problems,
            })
        }
    }

    /// Parses TOML text; the error names the line and the key.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// The manifest's semantic version (call after [`Manifest::check`] found nothing).
    pub fn semver(&self) -> Option<semver::Version> {
        semver::Version::parse(&self.version).ok()
    }

    /// Every problem with the values, in key order; empty when the manifest is valid.
    pub fn check(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let mut bad = |key: &str, message: String| {
            p.push(Problem {
                key: key.into(),
                message,
            })
        };
        if let Err(e) = AppName::parse(&self.name) {
            bad("name", e.to_string());
        }
        match semver::Version::parse(&self.version) {
            Ok(v) if !v.build.is_empty() => bad(
                "version",
                format!(
                    "{:?} has build metadata (+{}), which semver ignores when ordering: two \
                     different bundles would have equal versions; drop the +… part",
                    self.version, v.build
                ),
            ),
            Ok(_) => {}
            Err(e) => {
                let hint = if self.version.starts_with('v') {
                    " (write it without the leading v)"
                } else {
                    " (MAJOR.MINOR.PATCH, e.g. 1.0.0 or 2.1.0-rc.1)"
                };
                bad(
                    "version",
                    format!("{:?} is not a semantic version: {e}{hint}", self.version),
                );
            }
        }
        if let Err(e) = check_entry(&self.entry) {
            bad("entry", e);
        }
        if let Some(release) = &self.release {
            if release.split_whitespace().next().is_none() {
                bad(
                    "release",
                    "is empty: remove the key or give a command".into(),
                );
            }
        }
        let drain = self.drain.as_duration();
        if drain > Duration::from_secs(600) {
            bad(
                "drain",
                format!("{} is over the maximum of 10m", self.drain),
            );
        }
        let h = &self.health;
        if let Err(e) = check_path(&h.path) {
            bad("health.path", e);
        }
        if !(100..=599).contains(&h.status) {
            bad(
                "health.status",
                format!("{} is not an HTTP status", h.status),
            );
        }
        let interval = h.interval.as_duration();
        if interval < Duration::from_millis(50) || interval > Duration::from_secs(60) {
            bad(
                "health.interval",
                format!("{} is outside 50ms..60s", h.interval),
            );
        }
        let timeout = h.timeout.as_duration();
        if timeout < Duration::from_millis(50) || timeout > Duration::from_secs(60) {
            bad(
                "health.timeout",
                format!("{} is outside 50ms..60s", h.timeout),
            );
        }
        for (key, n) in [
            ("health.healthy_threshold", h.healthy_threshold),
            ("health.unhealthy_threshold", h.unhealthy_threshold),
        ] {
            if !(1..=100).contains(&n) {
                bad(key, format!("{n} is outside 1..100"));
            }
        }
        let start = h.start_timeout.as_duration();
        if start < interval || start > Duration::from_secs(600) {
            bad(
                "health.start_timeout",
                format!(
                    "{} must be at least health.interval ({}) and at most 10m",
                    h.start_timeout, h.interval
                ),
            );
        }
        for (i, s) in self.smoke.iter().enumerate() {
            if let Err(e) = check_path(&s.path) {
                bad(&format!("smoke[{i}].path"), e);
            }
            if s.method != "GET" && s.method != "HEAD" {
                bad(
                    &format!("smoke[{i}].method"),
                    format!(
                        "{:?}: smoke requests are GET or HEAD (they run against a version \
                         that is not live yet and must not change data)",
                        s.method
                    ),
                );
            }
            if !(100..=599).contains(&s.status) {
                bad(
                    &format!("smoke[{i}].status"),
                    format!("{} is not an HTTP status", s.status),
                );
            }
        }
        if self.smoke.len() > 20 {
            bad(
                "smoke",
                format!("{} requests; at most 20", self.smoke.len()),
            );
        }
        let r = &self.resources;
        if !(1..=64).contains(&r.processes) {
            bad(
                "resources.processes",
                format!("{} is outside 1..64", r.processes),
            );
        }
        if !(1..=256).contains(&r.threads) {
            bad(
                "resources.threads",
                format!("{} is outside 1..256", r.threads),
            );
        }
        if r.memory.as_u64() < ByteSize::mib(32).as_u64()
            || r.memory.as_u64() > ByteSize::gib(64).as_u64()
        {
            bad(
                "resources.memory",
                format!("{} is outside 32MiB..64GiB", r.memory),
            );
        }
        if !(r.cpu.is_finite() && (0.05..=64.0).contains(&r.cpu)) {
            bad("resources.cpu", format!("{} is outside 0.05..64", r.cpu));
        }
        let mut seen = Vec::new();
        for s in &self.services {
            if !SERVICES.contains(&s.as_str()) {
                bad(
                    "services",
                    format!(
                        "{s:?} is not a Berth service (choose from {})",
                        SERVICES.join(", ")
                    ),
                );
            } else if seen.contains(&s) {
                bad("services", format!("{s:?} is listed twice"));
            }
            seen.push(s);
        }
        if self.env.len() > 256 {
            bad("env", format!("{} variables; at most 256", self.env.len()));
        }
        for (k, v) in &self.env {
            if let Err(e) = check_env_name(k) {
                bad(&format!("env.{k}"), e);
            }
            if v.len() > 32 * 1024 {
                bad(&format!("env.{k}"), "the value is over 32 KiB".into());
            }
            if v.contains('\0') {
                bad(&format!("env.{k}"), "the value contains a NUL byte".into());
            }
        }
        p
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `module.sub:attribute.sub`, each part a Python identifier.
pub fn check_entry(entry: &str) -> Result<(), String> {
    let Some((module, attr)) = entry.split_once(':') else {
        return Err(format!(
            "{entry:?} is not module:attribute (e.g. main:application)"
        ));
    };
    for (what, dotted) in [("module", module), ("attribute", attr)] {
        if dotted.is_empty() || !dotted.split('.').all(is_identifier) {
            return Err(format!(
                "{entry:?}: the {what} {dotted:?} is not a dotted Python name"
            ));
        }
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path.len() > 1024 || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!(
            "{path:?} must be at most 1024 visible characters (percent-encode the rest)"
        ));
    }
    Ok(())
}

fn check_env_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c == '_' || c.is_ascii_uppercase() || c.is_ascii_digit());
    if !valid {
        return Err(format!(
            "{name:?} is not an environment variable name ([A-Z_][A-Z0-9_]*, at most 128)"
        ));
    }
    if name.starts_with("BERTH_") {
        return Err(format!(
            "{name:?}: BERTH_* variables are set by the platform (the runtime contract)"
        ));
    }
    const RESERVED: [&str; 8] = [
        "PATH",
        "HOME",
        "PYTHONPATH",
        "PYTHONHOME",
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "TMPDIR",
        "PYTHONSTARTUP",
    ];
    if RESERVED.contains(&name) {
        return Err(format!(
            "{name:?} is set by the platform for every app and cannot be overridden"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "guestbook"
version = "1.0.0"
entry = "main:application"
release = "python -m schema"

[health]
path = "/healthz"
interval = "200ms"

[[smoke]]
path = "/"
contains = "Guestbook"

[resources]
processes = 2
memory = "128MiB"
cpu = 0.5

[env]
GUESTBOOK_TITLE = "Hi"
"#;

    fn keys(text: &str) -> Vec<String> {
        Manifest::parse(text)
            .unwrap()
            .check()
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn a_good_manifest_has_no_problems_and_gets_defaults() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.check(), vec![]);
        assert_eq!(m.health.interval.as_duration(), Duration::from_millis(200));
        assert_eq!(m.health.status, 200);
        assert_eq!(m.resources.threads, 8);
        assert_eq!(m.services, vec!["cache", "blobs", "db", "logs"]);
        assert_eq!(m.smoke[0].method, "GET");
        assert_eq!(m.semver().unwrap(), semver::Version::new(1, 0, 0));
    }

    #[test]
    fn the_minimal_manifest_is_three_keys() {
        let m = Manifest::parse("name = \"a\"\nversion = \"0.1.0\"\nentry = \"app:app\"\n");
        assert_eq!(m.unwrap().check(), vec![]);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_parse_errors_with_a_line() {
        let e =
            Manifest::parse("name = \"a\"\nversion = \"1.0.0\"\nentry = \"m:a\"\nentrypoint = 1\n")
                .unwrap_err();
        assert!(e.contains("entrypoint") && e.contains("line 4"), "{e}");
        let e = Manifest::parse("name = \"a\"\nversion = 1\nentry = \"m:a\"\n").unwrap_err();
        assert!(e.contains("version"), "{e}");
        let e = Manifest::parse("name = \"a\"\nversion = \"1.0.0\"\n").unwrap_err();
        assert!(e.contains("entry"), "{e}");
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let text = r#"
name = "Guest_Book"
version = "v1.0"
entry = "main.application"
drain = "1h"
services = ["cache", "mail", "cache"]

[health]
path = "healthz"
status = 999
interval = "10ms"
healthy_threshold = 0
start_timeout = "1h"

[[smoke]]
path = "/"
method = "POST"

[resources]
processes = 0
threads = 1000
memory = "1MiB"
cpu = 0.0

[env]
BERTH_APP = "x"
lower = "y"
PATH = "/tmp"
"#;
        assert_eq!(
            keys(text),
            vec![
                "name",
                "version",
                "entry",
                "drain",
                "health.path",
                "health.status",
                "health.interval",
                "health.healthy_threshold",
                "health.start_timeout",
                "smoke[0].method",
                "resources.processes",
                "resources.threads",
                "resources.memory",
                "resources.cpu",
                "services",
                "services",
                "env.BERTH_APP",
                "env.PATH",
                "env.lower",
            ]
        );
    }

    #[test]
    fn version_messages_say_what_to_write() {
        let m = |v: &str| {
            Manifest::parse(&format!(
                "name = \"a\"\nversion = \"{v}\"\nentry = \"m:a\"\n"
            ))
            .unwrap()
            .check()
        };
        assert!(m("v1.0.0")[0].message.contains("without the leading v"));
        assert!(m("1.0")[0].message.contains("MAJOR.MINOR.PATCH"));
        assert!(m("1.0.0+build.5")[0].message.contains("build metadata"));
        assert!(m("2.0.0-rc.1").is_empty());
    }

    #[test]
    fn entry_points() {
        assert!(check_entry("main:application").is_ok());
        assert!(check_entry("pkg.web:app.wsgi").is_ok());
        assert!(check_entry("_m:_a1").is_ok());
        for bad in [
            "main",
            ":app",
            "main:",
            "1main:app",
            "main:app-x",
            "ma in:app",
            "a..b:c",
        ] {
            assert!(check_entry(bad).is_err(), "{bad}");
        }
    }
}
