//! Usage against quota, sampled: every `sample_interval` the dashboard reads the services'
//! `/metrics` (cache, blob, query proxy, log collector, router) and keeps, per app, the last
//! `history` of samples: cache memory, blob bytes, database size, log bytes on disk, and the
//! router's request and 5xx counters (from which request and error rates are computed).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_common::shutdown::ShutdownSignal;
use parking_lot::Mutex;

use super::client;
use crate::daemon::state::{now_ms, State};

/// One sample of one app. `None`: that service's metrics could not be read then.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub at_ms: i64,
    pub cache: Option<u64>,
    pub blob: Option<u64>,
    pub db: Option<u64>,
    pub logs: Option<u64>,
    /// The router's counters since it started: requests answered, and those answered 5xx.
    pub requests: Option<f64>,
    pub errors: Option<f64>,
}

/// Where the samples come from.
#[derive(Debug, Clone)]
pub struct Sources {
    pub cache: String,
    pub blob: String,
    pub query: String,
    pub logs: String,
    pub router: String,
    /// Tokens to try, in order, for each service's `/metrics` (files re-read at each sample,
    /// so a rotated token is picked up).
    pub token_files: Vec<PathBuf>,
}

/// The samples and the last error of each source.
#[derive(Debug, Default)]
pub struct Usage {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    apps: HashMap<String, VecDeque<Sample>>,
    /// Source name -> why its last read failed.
    errors: BTreeMap<&'static str, String>,
}

/// What the pages show of one app.
#[derive(Debug, Clone, Default)]
pub struct AppUsage {
    pub samples: Vec<Sample>,
    /// Requests per second and the share of them answered 5xx, over the last interval.
    pub request_rate: Option<f64>,
    pub error_rate: Option<f64>,
    /// Sources that could not be read, with why.
    pub errors: Vec<(&'static str, String)>,
}

impl AppUsage {
    /// The newest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.samples.last()
    }
}

impl Usage {
    /// The app's samples and rates.
    pub fn app(&self, app: &str) -> AppUsage {
        let inner = self.inner.lock();
        let samples: Vec<Sample> = inner
            .apps
            .get(app)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default();
        let (request_rate, error_rate) = rates(&samples);
        AppUsage {
            samples,
            request_rate,
            error_rate,
            errors: inner.errors.iter().map(|(k, v)| (*k, v.clone())).collect(),
        }
    }

    fn record(&self, apps: &[String], metrics: &Scraped, keep: usize) {
        let at_ms = now_ms();
        let mut inner = self.inner.lock();
        inner.apps.retain(|a, _| apps.contains(a));
        for app in apps {
            let db = format!("app_{}", app.replace('-', "_"));
            let sample = Sample {
                at_ms,
                cache: metrics
                    .cache
                    .as_ref()
                    .map(|m| m.sum("berth_cache_memory_bytes", "app", app) as u64),
                blob: metrics
                    .blob
                    .as_ref()
                    .map(|m| m.sum("berth_blob_app_bytes_used", "app", app) as u64),
                db: metrics
                    .query
                    .as_ref()
                    .map(|m| m.sum("query_proxy_app_db_bytes", "database", &db) as u64),
                logs: metrics
                    .logs
                    .as_ref()
                    .map(|m| m.sum("log_disk_bytes", "app", app) as u64),
                requests: metrics
                    .router
                    .as_ref()
                    .map(|m| m.sum("berth_router_requests_total", "app", app)),
                errors: metrics.router.as_ref().map(|m| {
                    m.sum_where(
                        "berth_router_requests_total",
                        &[("app", app), ("class", "5xx")],
                    )
                }),
            };
            let q = inner.apps.entry(app.clone()).or_default();
            q.push_back(sample);
            while q.len() > keep.max(2) {
                q.pop_front();
            }
        }
        inner.errors = metrics.errors.clone();
    }
}

/// Requests per second and the 5xx share between the last two samples.
fn rates(samples: &[Sample]) -> (Option<f64>, Option<f64>) {
    let [.., a, b] = samples else {
        return (None, None);
    };
    let (Some(ra), Some(rb)) = (a.requests, b.requests) else {
        return (None, None);
    };
    let secs = (b.at_ms - a.at_ms) as f64 / 1000.0;
    // A router restart resets its counters.
    let done = if rb >= ra { rb - ra } else { rb };
    if secs <= 0.0 {
        return (None, None);
    }
    let failed = match (a.errors, b.errors) {
        (Some(ea), Some(eb)) if eb >= ea => eb - ea,
        (_, Some(eb)) => eb,
        _ => 0.0,
    };
    let error_rate = if done > 0.0 {
        Some(failed / done)
    } else {
        Some(0.0)
    };
    (Some(done / secs), error_rate)
}

/// Samples every `interval` until shutdown, keeping `history` of them.
pub async fn sample(
    usage: Arc<Usage>,
    state: Arc<State>,
    sources: Sources,
    interval: Duration,
    history: Duration,
    mut shutdown: ShutdownSignal,
) {
    let keep = (history.as_millis() / interval.as_millis().max(1)) as usize + 1;
    loop {
        let scraped = scrape(&sources, interval.min(Duration::from_secs(5))).await;
        let apps: Vec<String> = state
            .apps()
            .map(|a| a.into_iter().map(|a| a.name).collect())
            .unwrap_or_default();
        usage.record(&apps, &scraped, keep);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.recv() => return,
        }
    }
}

#[derive(Debug, Default)]
struct Scraped {
    cache: Option<Metrics>,
    blob: Option<Metrics>,
    query: Option<Metrics>,
    logs: Option<Metrics>,
    router: Option<Metrics>,
    errors: BTreeMap<&'static str, String>,
}

async fn scrape(sources: &Sources, timeout: Duration) -> Scraped {
    let tokens: Vec<String> = sources
        .token_files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let tokens = tokens.as_slice();
    let (cache, blob, query, logs, router) = tokio::join!(
        read_metrics(&sources.cache, tokens, timeout),
        read_metrics(&sources.blob, tokens, timeout),
        read_metrics(&sources.query, tokens, timeout),
        read_metrics(&sources.logs, tokens, timeout),
        read_metrics(&sources.router, tokens, timeout),
    );
    let mut errors = BTreeMap::new();
    let mut keep = |name: &'static str, r: Option<Result<Metrics, String>>| match r? {
        Ok(m) => Some(m),
        Err(e) => {
            errors.insert(name, e);
            None
        }
    };
    Scraped {
        cache: keep("cache", cache),
        blob: keep("blobs", blob),
        query: keep("database", query),
        logs: keep("logs", logs),
        router: keep("requests", router),
        errors,
    }
}

/// `None` when the source is not configured (an empty URL).
async fn read_metrics(
    url: &str,
    tokens: &[String],
    timeout: Duration,
) -> Option<Result<Metrics, String>> {
    if url.is_empty() {
        return None;
    }
    let mut last = String::new();
    let candidates: Vec<Option<&str>> = if tokens.is_empty() {
        vec![None]
    } else {
        tokens.iter().map(|t| Some(t.as_str())).collect()
    };
    for token in candidates {
        match client::get_text(url, "/metrics", token, timeout).await {
            Ok((200, text)) => return Some(Ok(Metrics::parse(&text))),
            Ok((status @ (401 | 403), _)) => {
                last = format!("{url}/metrics answered {status}: give berthd a token it accepts ([dashboard] metrics_token_files)");
            }
            Ok((status, _)) => return Some(Err(format!("{url}/metrics answered {status}"))),
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Err(last))
}

/// A sample's labels: (name, value) pairs.
type Labels = Vec<(String, String)>;

/// Samples of a Prometheus text exposition: name -> (labels, value).
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    series: HashMap<String, Vec<(Labels, f64)>>,
}

impl Metrics {
    /// Parses the text format; lines it cannot read are skipped.
    pub fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((name, labels, value)) = parse_line(line) {
                m.series
                    .entry(name.to_string())
                    .or_default()
                    .push((labels, value));
            }
        }
        m
    }

    /// The sum of `name`'s samples whose label `key` is `value`.
    pub fn sum(&self, name: &str, key: &str, value: &str) -> f64 {
        self.sum_where(name, &[(key, value)])
    }

    /// The sum of `name`'s samples with every label of `want`.
    pub fn sum_where(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.series
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(labels, _)| {
                        want.iter()
                            .all(|(k, w)| labels.iter().any(|(lk, lv)| lk == k && lv == w))
                    })
                    .map(|(_, v)| *v)
                    .sum()
            })
            .unwrap_or(0.0)
    }
}

/// `name{a="x",b="y"} value [timestamp]`.
fn parse_line(line: &str) -> Option<(&str, Labels, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()? {
                            (_, '\\') => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            (_, '"') => break,
                            (_, other) => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                other => key.push(other),
            }
        }
        rest = &r[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let m = Metrics::parse(
            "# HELP x y\n# TYPE berth_router_requests_total counter\n\
             berth_router_requests_total{app=\"shop\",class=\"2xx\"} 10\n\
             berth_router_requests_total{app=\"shop\",class=\"5xx\"} 2\n\
             berth_router_requests_total{app=\"blog\",class=\"2xx\"} 7 1700000000\n\
             log_disk_bytes{app=\"we\\\"ird\"} 5\n\
             berthd_apps 3\n\
             garbage{\n",
        );
        assert_eq!(m.sum("berth_router_requests_total", "app", "shop"), 12.0);
        assert_eq!(
            m.sum_where(
                "berth_router_requests_total",
                &[("app", "shop"), ("class", "5xx")]
            ),
            2.0
        );
        assert_eq!(m.sum("berth_router_requests_total", "app", "blog"), 7.0);
        assert_eq!(m.sum("log_disk_bytes", "app", "we\"ird"), 5.0);
        assert_eq!(m.sum("nothing", "app", "shop"), 0.0);
        assert_eq!(m.series["berthd_apps"][0].1, 3.0);
    }

    #[test]
    fn rates_between_the_last_two_samples() {
        let s = |at_ms, r, e| Sample {
            at_ms,
            requests: Some(r),
            errors: Some(e),
            ..Sample::default()
        };
        assert_eq!(rates(&[s(0, 0.0, 0.0)]), (None, None));
        assert_eq!(
            rates(&[s(0, 10.0, 0.0), s(1000, 30.0, 5.0), s(3000, 70.0, 15.0)]),
            (Some(20.0), Some(0.25))
        );
        // A restarted router counts from zero again.
        assert_eq!(
            rates(&[s(0, 100.0, 0.0), s(2000, 10.0, 0.0)]),
            (Some(5.0), Some(0.0))
        );
    }

    #[test]
    fn keeps_only_the_history() {
        let usage = Usage::default();
        let mut scraped = Scraped {
            cache: Some(Metrics::parse("berth_cache_memory_bytes{app=\"a\"} 42\n")),
            ..Scraped::default()
        };
        scraped.errors.insert("blobs", "cannot reach".into());
        for _ in 0..5 {
            usage.record(&["a".into()], &scraped, 3);
        }
        let a = usage.app("a");
        assert_eq!(a.samples.len(), 3);
        assert_eq!(a.last().unwrap().cache, Some(42));
        assert_eq!(a.last().unwrap().blob, None);
        assert_eq!(a.errors, vec![("blobs", "cannot reach".to_string())]);
        usage.record(&[], &scraped, 3);
        assert!(usage.app("a").samples.is_empty());
    }
}
