//! `berth logs APP`: recent events of an app from the log collector, or `--tail` to follow
//! them live (server-sent events, resumed from the last event seen if the connection drops,
//! so nothing is shown twice or skipped).

use std::io::{self, BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{self, BaseUrl};

/// Arguments of `berth logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The app.
    pub app: String,
    /// Keep following new events after showing the recent ones.
    #[arg(
        short = 't',
        long = "tail",
        visible_alias = "follow",
        short_alias = 'f'
    )]
    pub tail: bool,
    /// Only events received since then: a duration ago (`10m`, `2h`, `1d`), RFC 3339, or
    /// Unix seconds.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only events received until then (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Only this level and more severe (debug, info, notice, warning, error, critical).
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub level: Option<String>,
    /// Only this logger and its children (`app.db` matches `app.db.pool`).
    #[arg(long, value_name = "NAME")]
    pub logger: Option<String>,
    /// Only events whose message or exception contains TEXT (case-insensitive unless TEXT
    /// has capitals).
    #[arg(short = 'g', long, value_name = "TEXT")]
    pub grep: Option<String>,
    /// How many recent events to show (default 100; with --since and no -n: all).
    #[arg(short = 'n', long = "num", value_name = "N")]
    pub num: Option<usize>,
    /// Print each event as one JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// The log collector's HTTP API.
    #[arg(long, env = "BERTH_LOGS_URL", default_value = "http://127.0.0.1:8099")]
    pub url: String,
    /// App or operator token.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (e.g. berthd's data_dir/operator-token).
    #[arg(long, env = "BERTH_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Page {
    events: Vec<Value>,
    cursor: Option<u64>,
    more: bool,
    #[serde(default)]
    last_seq: u64,
}

/// Runs `berth logs`.
pub fn run(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let owned;
    let args = match (&args.token, &args.token_file) {
        (None, Some(path)) => {
            let token = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?
                .trim()
                .to_string();
            owned = LogsArgs {
                token: Some(token),
                ..args.clone()
            };
            &owned
        }
        _ => args,
    };
    let base = BaseUrl::parse(&args.url)?;
    let filters = filter_query(args);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut last_seen = None;
    let mut last_seq = 0;
    let everything_since = args.since.is_some() && args.num.is_none();
    if everything_since {
        let mut cursor: Option<u64> = None;
        loop {
            let page = fetch(&base, args, &filters, "asc", cursor, 1000)?;
            last_seq = last_seq.max(page.last_seq);
            for ev in &page.events {
                print_event(&mut out, ev, args)?;
                last_seen = seq_of(ev).or(last_seen);
            }
            if !page.more {
                break;
            }
            cursor = page.cursor;
        }
    } else {
        let want = args.num.unwrap_or(100);
        let mut got: Vec<Value> = Vec::new();
        let mut cursor: Option<u64> = None;
        let mut first = true;
        while got.len() < want {
            let page = fetch(
                &base,
                args,
                &filters,
                "desc",
                cursor,
                (want - got.len()).min(1000),
            )?;
            if first {
                last_seq = page.last_seq;
                first = false;
            }
            got.extend(page.events);
            if !page.more {
                break;
            }
            cursor = page.cursor;
        }
        for ev in got.iter().rev() {
            print_event(&mut out, ev, args)?;
        }
        last_seen = got.first().and_then(seq_of);
    }
    out.flush()?;
    if args.tail {
        let from = last_seen.unwrap_or(0).max(last_seq);
        follow(&base, args, &filters, from, &mut out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn seq_of(ev: &Value) -> Option<u64> {
    ev.get("seq").and_then(Value::as_u64)
}

fn filter_query(args: &LogsArgs) -> String {
    let mut q = String::new();
    let pairs = [
        ("since", &args.since),
        ("until", &args.until),
        ("level", &args.level),
        ("logger", &args.logger),
        ("grep", &args.grep),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", http::encode(v)));
        }
    }
    q
}

fn check_status(status: u16, body: &str, args: &LogsArgs) -> anyhow::Result<()> {
    if status == 200 {
        return Ok(());
    }
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.trim().to_owned());
    let hint = match status {
        401 | 403 => " (set BERTH_TOKEN, BERTH_TOKEN_FILE, --token or --token-file to the app's or an operator's token)",
        _ => "",
    };
    bail!("{} answered {status}: {msg}{hint}", args.url)
}

fn fetch(
    base: &BaseUrl,
    args: &LogsArgs,
    filters: &str,
    order: &str,
    cursor: Option<u64>,
    limit: usize,
) -> anyhow::Result<Page> {
    let mut path = format!(
        "/v1/apps/{}/events?order={order}&limit={limit}{filters}",
        http::encode(&args.app)
    );
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={c}"));
    }
    let resp = http::get(
        base,
        &path,
        args.token.as_deref(),
        Some(Duration::from_secs(60)),
    )
    .with_context(|| format!("is the log collector running at {}?", args.url))?;
    let status = resp.status;
    let body = resp.text().context("reading the answer")?;
    check_status(status, &body, args)?;
    serde_json::from_str(&body).context("the log collector's answer is not a page of events")
}

/// Follows the live tail from after `from`, reconnecting (from the last event shown) when
/// the connection drops.
fn follow(
    base: &BaseUrl,
    args: &LogsArgs,
    filters: &str,
    from: u64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut cursor = from;
    let mut failures = 0u32;
    loop {
        let path = format!(
            "/v1/apps/{}/tail?cursor={cursor}{filters}",
            http::encode(&args.app)
        );
        let resp = match http::get(base, &path, args.token.as_deref(), None) {
            Ok(r) => r,
            Err(e) => {
                failures += 1;
                if failures > 30 {
                    return Err(e).context("the log collector stayed unreachable");
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if resp.status != 200 {
            let status = resp.status;
            let body = resp.text().unwrap_or_default();
            check_status(status, &body, args)?;
            continue;
        }
        failures = 0;
        let mut data = String::new();
        let mut line = String::new();
        let mut reader = BufReader::new(resp.body);
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if let Some(d) = l.strip_prefix("data:") {
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if l.is_empty() && !data.is_empty() {
                let ev: Value = serde_json::from_str(&data).context("bad event from the tail")?;
                data.clear();
                print_event(out, &ev, args)?;
                out.flush()?;
                if let Some(s) = seq_of(&ev) {
                    cursor = s;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One event as a line: `2026-11-25T19:27:08.123456Z app[instance] LEVEL logger: message`,
/// with an exception's lines below it, indented.
fn print_event(out: &mut impl Write, ev: &Value, args: &LogsArgs) -> io::Result<()> {
    if args.json {
        writeln!(out, "{ev}")?;
        return Ok(());
    }
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("");
    let who = match (s("instance"), s("stream")) {
        ("", "") => args.app.clone(),
        ("", stream) => format!("{}[{stream}]", args.app),
        (inst, _) => format!("{}[{inst}]", args.app),
    };
    let logger = s("logger");
    let level = s("level").to_ascii_uppercase();
    if logger.is_empty() {
        writeln!(out, "{} {who} {level}: {}", s("timestamp"), s("message"))?;
    } else {
        writeln!(
            out,
            "{} {who} {level} {logger}: {}",
            s("timestamp"),
            s("message")
        )?;
    }
    for line in s("exception").lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}
