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
    let runtime = match builder.thread_name(thread_name).enable_all().build() {
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
