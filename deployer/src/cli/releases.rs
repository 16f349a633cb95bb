//! The verbs about what runs: `versions`, `releases`, `promote`, `rollback`, `status`,
//! `scale`, `restart` (berthd's `Deploys` service). The ones that change something show
//! their progress like `berth deploy` ([`super::deploy::follow`]).

use std::process::ExitCode;

use berth_api::v1 as api;
use clap::Args;
use serde_json::{json, Value};

use super::control::{failed, print_json, when, Client, Conn};
use super::deploy::{deploys, follow, human_bytes, release_json, Kind, Renderer};

/// `berth versions APP`.
#[derive(Debug, Args)]
pub struct VersionsArgs {
    /// The app.
    pub app: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth releases APP`.
#[derive(Debug, Args)]
pub struct ReleasesArgs {
    /// The app.
    pub app: String,
    /// At most this many, newest first.
    #[arg(short = 'n', long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth promote APP VERSION|RELEASE`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The app.
    pub app: String,
    /// A version ("1.2.0": with the current config) or a release ("v3": with its config).
    #[arg(value_name = "VERSION|RELEASE")]
    pub target: String,
    /// Allow a version lower than the live one.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Why, for the audit history.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth rollback APP [RELEASE]`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app.
    pub app: String,
    /// The release to make live again ("v3"); default: the one before the live one.
    pub release: Option<String>,
    /// Why, for the audit history.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth status APP`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The app.
    pub app: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth scale APP N`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The app.
    pub app: String,
    /// Instances of the live release (each the manifest's processes x threads).
    #[arg(value_name = "N")]
    pub instances: u32,
    #[command(flatten)]
    pub conn: Conn,
}

/// `berth restart APP`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The app.
    pub app: String,
    /// Why, for the audit history.
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Runs `berth versions`: the versions berthd keeps, newest first.
pub fn versions(args: &VersionsArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let r =
        c.rt.block_on(deploys(&c).list_versions(api::ListVersionsRequest {
            app: args.app.clone(),
        }))
        .map_err(failed)?
        .into_inner();
    if args.conn.json {
        print_json(&Value::Array(r.versions.iter().map(version_json).collect()))?;
    } else {
        print!("{}", render_versions(&args.app, &r.versions));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth releases`: the releases, newest first.
pub fn releases(args: &ReleasesArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let r =
        c.rt.block_on(deploys(&c).list_releases(api::ListReleasesRequest {
            app: args.app.clone(),
            limit: args.limit,
        }))
        .map_err(failed)?
        .into_inner();
    if args.conn.json {
        print_json(&Value::Array(r.releases.iter().map(release_json).collect()))?;
    } else {
        print!("{}", render_releases(&args.app, &r.releases));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `berth promote`.
pub fn promote(args: &PromoteArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let req = api::PromoteRequest {
        app: args.app.clone(),
        target: args.target.clone(),
        allow_downgrade: args.allow_downgrade,
        reason: args.reason.clone(),
    };
    let out = Renderer::new(args.conn.json);
    follow(&c, &args.app, &Kind::Release, out, async {
        deploys(&c).promote(req).await
    })
}

/// Runs `berth rollback`.
pub fn rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let req = api::RollbackRequest {
        app: args.app.clone(),
        release: args.release.clone().unwrap_or_default(),
        reason: args.reason.clone(),
    };
    let out = Renderer::new(args.conn.json);
    follow(&c, &args.app, &Kind::Release, out, async {
        deploys(&c).rollback(req).await
    })
}

/// Runs `berth scale`.
pub fn scale(args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let req = api::ScaleRequest {
        app: args.app.clone(),
        instances: args.instances,
    };
    let kind = Kind::Scale {
        instances: args.instances,
    };
    let out = Renderer::new(args.conn.json);
    follow(&c, &args.app, &kind, out, async {
        deploys(&c).scale(req).await
    })
}

/// Runs `berth restart`.
pub fn restart(args: &RestartArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let req = api::RestartRequest {
        app: args.app.clone(),
        reason: args.reason.clone(),
    };
    let out = Renderer::new(args.conn.json);
    follow(&c, &args.app, &Kind::Restart, out, async {
        deploys(&c).restart(req).await
    })
}

/// Runs `berth status`.
pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let c = Client::connect(&args.conn)?;
    let s =
        c.rt.block_on(deploys(&c).status(api::StatusRequest {
            app: args.app.clone(),
        }))
        .map_err(failed)?
        .into_inner();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    if args.conn.json {
        print_json(&status_json(&s))?;
    } else {
        print!("{}", render_status(&s, now));
    }
    Ok(ExitCode::SUCCESS)
}

// -- rendering --------------------------------------------------------------------------------

/// Columns separated by two spaces, each as wide as its widest cell; no trailing spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

/// A digest for people: its first 12 hex digits.
fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}

/// The `berth versions` table.
pub(crate) fn render_versions(app: &str, versions: &[api::Version]) -> String {
    if versions.is_empty() {
        return format!("{app} has no versions yet: `berth deploy` uploads the first\n");
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                v.version.clone(),
                dash(&v.state),
                when(v.created_ms),
                dash(&v.actor),
                v.entry.clone(),
                short(&v.digest),
            ]
        })
        .collect();
    let mut out = table(
        &["VERSION", "STATE", "CREATED", "ACTOR", "ENTRY", "DIGEST"],
        &rows,
    );
    for v in versions.iter().filter(|v| !v.error.is_empty()) {
        out.push_str(&format!("{} failed: {}\n", v.version, v.error));
    }
    out
}

/// The `berth releases` table.
pub(crate) fn render_releases(app: &str, releases: &[api::Release]) -> String {
    if releases.is_empty() {
        return format!("{app} has no releases yet: `berth deploy` makes the first\n");
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.version.clone(),
                dash(&r.state),
                when(r.created_ms),
                dash(&r.actor),
                r.description.clone(),
            ]
        })
        .collect();
    table(
        &[
            "RELEASE",
            "VERSION",
            "STATE",
            "CREATED",
            "ACTOR",
            "DESCRIPTION",
        ],
        &rows,
    )
}

/// A duration for people: `45s`, `12m30s`, `3h12m`, `2d4h`.
pub(crate) fn human_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The `berth status` text, with uptimes as of `now_ms`.
pub(crate) fn render_status(s: &api::AppStatus, now_ms: i64) -> String {
    let mut out = format!("app       {}\n", s.app);
    match &s.live {
        Some(r) => out.push_str(&format!(
            "live      {}: {} {} ({}), since {} by {}\n",
            r.id,
            s.app,
            r.version,
            r.description,
            when(r.created_ms),
            dash(&r.actor)
        )),
        None => out.push_str("live      none: `berth deploy` makes the first release\n"),
    }
    out.push_str(&format!("activity  {}\n", dash(&s.activity)));
    out.push_str(&format!("scale     {} instance(s)\n", s.scale));
    match s.urls.split_first() {
        None => out.push_str("urls      -\n"),
        Some((first, rest)) => {
            out.push_str(&format!("urls      {first}\n"));
            for u in rest {
                out.push_str(&format!("          {u}\n"));
            }
        }
    }
    out.push('\n');
    if s.instances.is_empty() {
        out.push_str("no instances\n");
        return out;
    }
    let rows: Vec<Vec<String>> = s
        .instances
        .iter()
        .map(|i| {
            let running = i.pid != 0;
            vec![
                i.id.clone(),
                dash(&i.role),
                dash(&i.state),
                dash(&i.health),
                if running {
                    i.pid.to_string()
                } else {
                    "-".into()
                },
                if running {
                    human_bytes(i.memory_bytes)
                } else {
                    "-".into()
                },
                i.restarts.to_string(),
                if running && i.started_ms > 0 {
                    human_duration(now_ms - i.started_ms)
                } else {
                    "-".into()
                },
                dash(&i.last_exit),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "INSTANCE",
            "ROLE",
            "STATE",
            "HEALTH",
            "PID",
            "MEMORY",
            "RESTARTS",
            "UPTIME",
            "LAST EXIT",
        ],
        &rows,
    ));
    out
}

fn version_json(v: &api::Version) -> Value {
    json!({
        "version": v.version, "state": v.state, "created": when(v.created_ms),
        "created_ms": v.created_ms, "actor": v.actor, "entry": v.entry, "digest": v.digest,
        "bundle_sha256": v.bundle_sha256, "error": v.error,
    })
}

fn status_json(s: &api::AppStatus) -> Value {
    let instances: Vec<Value> = s
        .instances
        .iter()
        .map(|i| {
            json!({
                "id": i.id, "version": i.version, "role": i.role, "state": i.state,
                "health": i.health, "addr": i.addr, "pid": i.pid,
                "memory_bytes": i.memory_bytes, "restarts": i.restarts,
                "started_ms": i.started_ms, "last_exit": i.last_exit,
            })
        })
        .collect();
    json!({
        "app": s.app, "live": s.live.as_ref().map(release_json), "scale": s.scale,
        "activity": s.activity, "urls": s.urls, "instances": instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    const T0: i64 = 1_795_645_571_000; // 2026-11-25 22:26:11Z

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("berth").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn parses_the_verbs() {
        let Command::Releases(a) = parse(&["releases", "shop", "--limit", "5"]) else {
            panic!()
        };
        assert_eq!((a.app.as_str(), a.limit), ("shop", 5));
        let Command::Releases(a) = parse(&["releases", "shop"]) else {
            panic!()
        };
        assert_eq!(a.limit, 50);
        let Command::Promote(a) = parse(&["promote", "shop", "v3", "--allow-downgrade"]) else {
            panic!()
        };
        assert_eq!(a.target, "v3");
        assert!(a.allow_downgrade);
        let Command::Rollback(a) = parse(&["rollback", "shop"]) else {
            panic!()
        };
        assert_eq!(a.release, None);
        let Command::Rollback(a) = parse(&["rollback", "shop", "v2", "--reason", "bad"]) else {
            panic!()
        };
        assert_eq!(
            (a.release.as_deref(), a.reason.as_str()),
            (Some("v2"), "bad")
        );
        let Command::Scale(a) = parse(&["scale", "shop", "3", "--json"]) else {
            panic!()
        };
        assert_eq!(a.instances, 3);
        assert!(a.conn.json);
        let Command::Restart(a) = parse(&["restart", "shop"]) else {
            panic!()
        };
        assert_eq!(a.reason, "");
        let Command::Status(a) = parse(&["status", "shop"]) else {
            panic!()
        };
        assert_eq!(a.app, "shop");
        let Command::Versions(a) = parse(&["versions", "shop"]) else {
            panic!()
        };
        assert_eq!(a.app, "shop");
        for bad in [
            &["scale", "shop"][..],
            &["scale", "shop", "-1"],
            &["scale", "shop", "many"],
            &["promote", "shop"],
            &["status"],
        ] {
            let e = Cli::try_parse_from(std::iter::once("berth").chain(bad.iter().copied()))
                .unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    fn rel(n: u64, version: &str, state: &str, description: &str) -> api::Release {
        api::Release {
            id: format!("v{n}"),
            number: n,
            version: version.into(),
            created_ms: T0 + n as i64 * 60_000,
            actor: "app:guestbook:4357f5c619e5".into(),
            description: description.into(),
            state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn releases_table() {
        let text = render_releases(
            "guestbook",
            &[
                rel(3, "1.2.0", "live", "deploy 1.2.0"),
                rel(2, "1.1.0", "previous", "config set MODE"),
                rel(1, "1.1.0", "", "deploy 1.1.0"),
            ],
        );
        assert_eq!(
            text,
            "\
RELEASE  VERSION  STATE     CREATED               ACTOR                       DESCRIPTION
v3       1.2.0    live      2026-11-25 22:29:11Z  app:guestbook:4357f5c619e5  deploy 1.2.0
v2       1.1.0    previous  2026-11-25 22:28:11Z  app:guestbook:4357f5c619e5  config set MODE
v1       1.1.0    -         2026-11-25 22:27:11Z  app:guestbook:4357f5c619e5  deploy 1.1.0
"
        );
        assert_eq!(
            render_releases("guestbook", &[]),
            "guestbook has no releases yet: `berth deploy` makes the first\n"
        );
    }

    #[test]
    fn versions_table() {
        let v = api::Version {
            version: "1.2.0".into(),
            digest: "sha256:dc1b215d0123456789".into(),
            bundle_sha256: "ff".into(),
            entry: "main:application".into(),
            created_ms: T0,
            actor: "operator:abc".into(),
            state: "live".into(),
            error: String::new(),
        };
        let failed = api::Version {
            version: "1.3.0".into(),
            state: "failed".into(),
            error: "health: GET /healthz answered 500".into(),
            ..v.clone()
        };
        assert_eq!(
            render_versions("guestbook", &[failed, v]),
            "\
VERSION  STATE   CREATED               ACTOR         ENTRY             DIGEST
1.3.0    failed  2026-11-25 22:26:11Z  operator:abc  main:application  dc1b215d0123
1.2.0    live    2026-11-25 22:26:11Z  operator:abc  main:application  dc1b215d0123
1.3.0 failed: health: GET /healthz answered 500
"
        );
    }

    #[test]
    fn status_text() {
        let s = api::AppStatus {
            app: "guestbook".into(),
            live: Some(rel(3, "1.2.0", "live", "deploy 1.2.0")),
            instances: vec![
                api::Instance {
                    id: "1.2.0-1".into(),
                    version: "1.2.0".into(),
                    state: "running".into(),
                    health: "healthy".into(),
                    addr: "127.0.0.1:9001".into(),
                    pid: 4242,
                    memory_bytes: 50_331_648,
                    restarts: 0,
                    started_ms: T0,
                    last_exit: String::new(),
                    role: "live".into(),
                },
                api::Instance {
                    id: "1.1.0-1".into(),
                    version: "1.1.0".into(),
                    state: "stopped".into(),
                    health: "unknown".into(),
                    restarts: 2,
                    last_exit: "signal 9".into(),
                    role: "warm".into(),
                    ..Default::default()
                },
            ],
            scale: 1,
            activity: String::new(),
            urls: vec![
                "http://guestbook.localhost:8080/".into(),
                "https://guestbook.example.com/".into(),
            ],
        };
        let now = T0 + (3 * 3600 + 12 * 60 + 5) * 1000;
        assert_eq!(
            render_status(&s, now),
            "\
app       guestbook
live      v3: guestbook 1.2.0 (deploy 1.2.0), since 2026-11-25 22:29:11Z by app:guestbook:4357f5c619e5
activity  -
scale     1 instance(s)
urls      http://guestbook.localhost:8080/
          https://guestbook.example.com/

INSTANCE  ROLE  STATE    HEALTH   PID   MEMORY    RESTARTS  UPTIME  LAST EXIT
1.2.0-1   live  running  healthy  4242  48.0 MiB  0         3h12m   -
1.1.0-1   warm  stopped  unknown  -     -         2         -       signal 9
"
        );
        let empty = api::AppStatus {
            app: "shop".into(),
            ..Default::default()
        };
        assert_eq!(
            render_status(&empty, now),
            "app       shop\nlive      none: `berth deploy` makes the first release\n\
             activity  -\nscale     0 instance(s)\nurls      -\n\nno instances\n"
        );
        let v = status_json(&s);
        assert_eq!(v["live"]["id"], "v3");
        assert_eq!(v["instances"][0]["memory_bytes"], 50_331_648);
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(-5), "0s");
        assert_eq!(human_duration(45_000), "45s");
        assert_eq!(human_duration(750_000), "12m30s");
        assert_eq!(human_duration(2 * 86_400_000 + 4 * 3_600_000 + 1), "2d4h");
    }
}
