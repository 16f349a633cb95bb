//! `cache-server`: parse memcached's flags and our config, bind, then serve until SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use berth_common::shutdown::Shutdown;
use berth_common::tenants::TenantSet;
use cache_server::config::Cli;
use cache_server::server::{self, Bound, Shared};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon = cli.daemon;
    let print = cli.print_config;
    let check = cli.check_config;
    let (cfg, warnings) = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cache-server: {e}");
            return ExitCode::from(2);
        }
    };
    if print {
        return berth_common::config::print_config("cache-server", &cfg);
    }
    // A tenants file may also be a memcached auth file (-Y): TenantSet::load tells them apart.
    let tenants = match cfg
        .tenants_source()
        .and_then(|s| s.map(|s| s.load().map(|(set, _)| set)).transpose())
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cache-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(set) = &tenants {
        let total: u64 = server::cache_budgets(set, cfg.memory_limit.0)
            .iter()
            .map(|(_, b)| b)
            .sum();
        if total > cfg.memory_limit.0 {
            eprintln!(
                "cache-server: the apps' cache_bytes add up to {total} bytes, {} more than the memory limit (-m) of {} bytes; raise -m or lower the budgets",
                total - cfg.memory_limit.0,
                cfg.memory_limit.0
            );
            return ExitCode::from(2);
        }
    }
    if check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    if daemon {
        if let Err(e) = daemonize(cfg.verbosity > 0) {
            eprintln!("cache-server: cannot daemonize: {e}");
            return ExitCode::FAILURE;
        }
    }
    berth_common::telemetry::init(cfg.verbosity, cfg.log_json);
    for w in warnings {
        tracing::warn!("{w}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .thread_name("cache-worker")
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cache-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cfg, tenants)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cache-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    cfg: cache_server::config::Config,
    tenants: Option<TenantSet>,
) -> anyhow::Result<()> {
    let bound = Bound::bind(&cfg).await?;
    if let Some(user) = &cfg.user {
        drop_privileges(user)?;
    }
    if let Some(pidfile) = &cfg.pidfile {
        std::fs::write(pidfile, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pidfile {}", pidfile.display()))?;
    }
    let shutdown = Shutdown::new();
    shutdown.listen_os_signals();
    // SIGHUP reloads tenants once the server runs; until then (and without tenants) it must
    // not kill the process, which is its default action. tokio keeps a handler installed for
    // the life of the process once one is registered.
    let _hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let mut stdout = std::io::stdout().lock();
    for addr in bound.tcp_addrs() {
        let _ = writeln!(stdout, "LISTEN memcache {addr}");
    }
    if let Some(path) = &cfg.unix_socket {
        let _ = writeln!(stdout, "LISTEN memcache unix:{}", path.display());
    }
    if let Some(addr) = bound.admin_addr() {
        let _ = writeln!(stdout, "LISTEN admin {addr}");
    }
    let _ = stdout.flush();
    drop(stdout);
    let pidfile = cfg.pidfile.clone();
    let shared: Arc<Shared> = Shared::new(cfg, tenants, shutdown)?;
    let res = server::run(bound, shared).await;
    if let Some(p) = pidfile {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("cache-server stopped");
    res
}

/// `-d`: fork into the background, as memcached does, before any thread exists. Standard
/// input and output go to /dev/null, and standard error too unless logging was asked for
/// (`-v`), so a caller capturing the output is not held open by the daemon.
fn daemonize(keep_stderr: bool) -> std::io::Result<()> {
    // SAFETY: called before the tokio runtime or any other thread is started, so the child
    // is a faithful copy of a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    let fds: &[i32] = if keep_stderr { &[0, 1] } else { &[0, 1, 2] };
    for &fd in fds {
        // SAFETY: dup2 onto the standard descriptors with a valid open descriptor.
        if unsafe { libc::dup2(devnull.as_raw_fd(), fd) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `-u USER`: switch to the user's uid and gid once the sockets are bound.
fn drop_privileges(user: &str) -> anyhow::Result<()> {
    let name = std::ffi::CString::new(user).context("user name contains a NUL byte")?;
    // SAFETY: getpwnam takes a valid NUL-terminated string; the returned pointer (to static
    // storage) is checked for NULL and read immediately, before any other getpw* call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        anyhow::bail!("-u {user}: no such user");
    }
    // SAFETY: pw is non-null and points at a passwd record filled by getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: plain syscalls on integer ids; failures are checked below.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 && libc::getuid() == 0 {
            anyhow::bail!(
                "-u {user}: setgroups failed: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::setgid(gid) != 0 {
            anyhow::bail!(
                "-u {user}: setgid failed: {}",
                std::io::Error::last_os_error()
            );
        }
        if libc::setuid(uid) != 0 {
            anyhow::bail!(
                "-u {user}: setuid failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
