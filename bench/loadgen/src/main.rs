//! `cache-loadgen`: a closed-loop memcached text-protocol load generator for the cache
//! benchmarks (bench/cache). Each client thread runs its own single-threaded tokio runtime so
//! connections never migrate between cores; all threads meet at barriers between phases.

mod conn;
mod proto;
mod report;
mod workload;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;

use conn::{run_keys, run_mix, Conn, Mix, Op, Stats, Until};
use report::Report;
use workload::{Rng, Values};

/// Memcached text-protocol load generator: preload every key, then a timed get/set mix.
///
/// Exit status: 0 on a clean run; 3 when any error reply, wrong value, lost connection or
/// missing verified key was seen (the report is still printed); 1 on setup failure.
#[derive(Debug, Clone, Parser)]
#[command(name = "cache-loadgen", version)]
struct Args {
    /// Server address (host:port).
    #[arg(short, long, default_value = "127.0.0.1:11211")]
    server: String,
    /// TCP connections.
    #[arg(short, long, default_value_t = 50)]
    connections: usize,
    /// Client threads the connections are spread over.
    #[arg(short, long, default_value_t = 2)]
    threads: usize,
    /// Requests in flight per connection in the timed phase (1 = request/response).
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Key space: keys `key:00000000` .. `key:<keys-1>`.
    #[arg(short, long, default_value_t = 100_000)]
    keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Fraction of timed-phase requests that are gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    get_ratio: f64,
    /// Timed phase length in seconds, after the warm-up.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Run exactly this many requests instead of a fixed duration (no warm-up).
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Seconds of load before latencies and throughput are recorded (duration mode only).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Skip the preload that sets every key once before the timed phase.
    #[arg(long)]
    no_preload: bool,
    /// Requests in flight per connection during preload and verification.
    #[arg(long, default_value_t = 32)]
    preload_depth: usize,
    /// Only preload (and verify); no timed phase. Used by the memory benchmark.
    #[arg(long)]
    load_only: bool,
    /// After the run, read this many keys spread evenly over the key space and require each
    /// to be present with its exact value.
    #[arg(long, default_value_t = 0)]
    verify: u64,
    /// Seed for key and operation choice (each connection derives its own stream).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn validate(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.threads == 0 || self.depth == 0 || self.preload_depth == 0
        {
            bail!("--connections, --threads, --depth and --preload-depth must be at least 1");
        }
        if self.keys == 0 {
            bail!("--keys must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            bail!(
                "--get-ratio must be between 0 and 1, got {}",
                self.get_ratio
            );
        }
        if self.value_size > 1 << 20 {
            bail!("--value-size above 1 MiB exceeds memcached's default item limit");
        }
        if !(self.duration.is_finite()
            && self.duration > 0.0
            && self.warmup.is_finite()
            && self.warmup >= 0.0)
        {
            bail!("--duration must be positive and --warmup non-negative");
        }
        Ok(())
    }
}

/// Where all threads meet between phases; the last to arrive stamps the time, so main can
/// time each phase from the stamps afterwards.
struct Phases {
    barrier: Barrier,
    stamps: Mutex<Vec<Instant>>,
}

impl Phases {
    fn sync(&self) -> Instant {
        if self.barrier.wait().is_leader() {
            self.stamps
                .lock()
                .expect("no thread panics holding the stamps")
                .push(Instant::now());
        }
        self.barrier.wait();
        *self
            .stamps
            .lock()
            .expect("no thread panics holding the stamps")
            .last()
            .expect("leader stamped")
    }
}

/// Per-thread results: preload, run and verify counters for its connections.
#[derive(Default)]
struct ThreadOut {
    preload: Stats,
    run: Stats,
    verify: Stats,
    connect_error: Option<String>,
}

/// Runs one phase on every live connection of this thread concurrently; a connection that
/// fails is dropped and counted, the others carry on.
async fn each_conn<F, Fut>(conns: &mut [Option<(usize, Conn)>], stats: &mut Stats, f: F)
where
    F: Fn(usize, Conn) -> Fut,
    Fut: std::future::Future<Output = (Conn, Stats, Result<(), conn::ConnError>)> + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for slot in conns.iter_mut() {
        if let Some((idx, c)) = slot.take() {
            let fut = f(idx, c);
            set.spawn_local(async move { (idx, fut.await) });
        }
    }
    let mut back = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (idx, (c, s, res)) = joined.expect("connection tasks do not panic");
        stats.merge(&s);
        match res {
            Ok(()) => back.push((idx, c)),
            Err(e) => {
                stats.failed_conns += 1;
                if stats.error_samples.len() < 5 {
                    stats.error_samples.push(format!("connection {idx}: {e}"));
                }
            }
        }
    }
    back.sort_by_key(|(i, _)| *i);
    for (slot, c) in conns.iter_mut().zip(
        back.into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None)),
    ) {
        *slot = c;
    }
}

fn client_thread(
    t: usize,
    args: Arc<Args>,
    phases: Arc<Phases>,
    budget: Arc<AtomicU64>,
) -> ThreadOut {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    let mut out = ThreadOut::default();
    let n = args.connections;
    let mine: Vec<usize> = (t..n).step_by(args.threads).collect();
    let values = Arc::new(Values::new(args.value_size));

    let mut conns: Vec<Option<(usize, Conn)>> = local.block_on(&rt, async {
        let mut v = Vec::new();
        for &i in &mine {
            match Conn::connect(&args.server).await {
                Ok(c) => v.push(Some((i, c))),
                Err(e) => {
                    out.connect_error
                        .get_or_insert_with(|| format!("connect to {}: {e}", args.server));
                }
            }
        }
        v
    });

    phases.sync();
    if !args.no_preload {
        local.block_on(
            &rt,
            each_conn(&mut conns, &mut out.preload, |idx, mut c| {
                let (args, values) = (args.clone(), values.clone());
                async move {
                    let mut s = Stats::default();
                    let keys = (idx as u64..args.keys).step_by(n);
                    let r =
                        run_keys(&mut c, keys, Op::Set, args.preload_depth, &values, &mut s).await;
                    (c, s, r)
                }
            }),
        );
    }

    let start = phases.sync();
    if !args.load_only {
        let timed = args.requests.is_none();
        let warmup = if timed {
            Duration::from_secs_f64(args.warmup)
        } else {
            Duration::ZERO
        };
        let measure_from = start + warmup;
        let deadline = measure_from + Duration::from_secs_f64(args.duration);
        local.block_on(
            &rt,
            each_conn(&mut conns, &mut out.run, |idx, mut c| {
                let (args, values, budget) = (args.clone(), values.clone(), budget.clone());
                async move {
                    let mix = Mix {
                        keys: args.keys,
                        get_ratio: args.get_ratio,
                        depth: args.depth,
                    };
                    let mut rng =
                        Rng::new(args.seed.wrapping_mul(1_000_003).wrapping_add(idx as u64));
                    let until = if timed {
                        Until::Deadline(deadline)
                    } else {
                        Until::Budget(&budget)
                    };
                    let mut s = Stats::default();
                    let r =
                        run_mix(&mut c, &mix, &mut rng, &values, until, measure_from, &mut s).await;
                    (c, s, r)
                }
            }),
        );
    }

    phases.sync();
    if args.verify > 0 {
        local.block_on(
            &rt,
            each_conn(&mut conns, &mut out.verify, |idx, mut c| {
                let (args, values) = (args.clone(), values.clone());
                async move {
                    let (total, keys) = (args.verify.min(args.keys), args.keys);
                    let sample = (idx as u64..total)
                        .step_by(n)
                        .map(move |j| j * keys / total);
                    let mut s = Stats::default();
                    let r = run_keys(&mut c, sample, Op::Get, args.preload_depth, &values, &mut s)
                        .await;
                    (c, s, r)
                }
            }),
        );
    }
    out
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("cache-loadgen: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(mut args: Args) -> anyhow::Result<i32> {
    args.validate()?;
    args.threads = args.threads.min(args.connections);
    let args = Arc::new(args);
    let phases = Arc::new(Phases {
        barrier: Barrier::new(args.threads),
        stamps: Mutex::new(Vec::new()),
    });
    let budget = Arc::new(AtomicU64::new(args.requests.unwrap_or(0)));
    let handles: Vec<_> = (0..args.threads)
        .map(|t| {
            let (args, phases, budget) = (args.clone(), phases.clone(), budget.clone());
            std::thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || client_thread(t, args, phases, budget))
                .context("spawning client thread")
        })
        .collect::<anyhow::Result<_>>()?;

    let mut preload = Stats::default();
    let mut run = Stats::default();
    let mut verify = Stats::default();
    let mut connect_error = None;
    for h in handles {
        let out = h
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        preload.merge(&out.preload);
        run.merge(&out.run);
        verify.merge(&out.verify);
        connect_error = connect_error.or(out.connect_error);
    }
    if let Some(e) = connect_error {
        bail!("{e}");
    }
    // Stamps: [0] connected, [1] preloaded (timed phase starts), [2] timed phase done.
    let stamps = phases.stamps.lock().expect("threads joined").clone();
    let report = Report {
        server: args.server.clone(),
        connections: args.connections,
        threads: args.threads,
        depth: args.depth,
        keys: args.keys,
        value_size: args.value_size,
        get_ratio: args.get_ratio,
        preload: (!args.no_preload).then(|| (preload, stamps[1] - stamps[0])),
        run: (!args.load_only).then(|| {
            let warmup = if args.requests.is_none() {
                Duration::from_secs_f64(args.warmup)
            } else {
                Duration::ZERO
            };
            let from = stamps[1] + warmup;
            let window = run
                .last_done
                .map_or(Duration::ZERO, |end| end.saturating_duration_since(from));
            (run, window)
        }),
        verify: (args.verify > 0).then_some(verify),
    };
    if args.json {
        print!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    let (errors, failed, missing) = report.problems();
    Ok(if errors + failed + missing > 0 { 3 } else { 0 })
}
