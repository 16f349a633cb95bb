//! Starting a service's tokio runtime and turning how the service ended into an exit code,
//! the same way for every binary.

use std::future::Future;
use std::process::ExitCode;

/// Runs `service` on a multi-threaded runtime with `threads` workers (0: one per CPU) named
/// `thread_name`. A runtime that cannot start, or a service that ends with an error, is
/// reported on standard error (and in the log) prefixed with `binary`, and exits 1.
pub fn run_service(
    binary: &str,
    thread_name: &str,
    threads: usize,
    service: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        builder.worker_threads(threads);
    }
    builder.thread_name(thread_name);
    run_on(binary, builder, service)
}

/// Runs `service` on a current-thread runtime: every task on the calling thread (blocking
/// work still goes to tokio's blocking pool). For a service whose requests hop between tasks
/// (a proxy: client connection, backend connection), this saves the cross-thread wake-ups and
/// work stealing of a multi-threaded runtime. Errors are reported as by [`run_service`].
pub fn run_service_single_thread(
    binary: &str,
    service: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    run_on(
        binary,
        tokio::runtime::Builder::new_current_thread(),
        service,
    )
}

fn run_on(
    binary: &str,
    mut builder: tokio::runtime::Builder,
    service: impl Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{binary}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{binary}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
