//! Logging setup shared by every binary: `tracing` events to stderr, filtered by `-v` count or
//! by `RUST_LOG`, as text or as JSON lines for log shippers.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// Swaps the installed filter; set once by the `init` that installed the subscriber.
type Reload = Box<dyn Fn(EnvFilter) -> bool + Send + Sync>;
static RELOAD: OnceLock<Reload> = OnceLock::new();

/// Installs the global subscriber: level warn/info/debug/trace for `verbosity` 0/1/2/3+,
/// unless `RUST_LOG` holds a valid filter. `json` writes one JSON object per event.
/// Calling it again (tests, a library user) is a no-op.
pub fn init(verbosity: u8, json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level_for(verbosity)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into journald or a log file.
        .with_ansi(std::io::stderr().is_terminal());
    // Err only means a subscriber is already installed, which is what a second call expects.
    if json {
        let builder = builder.json().with_filter_reloading();
        let handle = builder.reload_handle();
        if builder.try_init().is_ok() {
            let _ = RELOAD.set(Box::new(move |f| handle.reload(f).is_ok()));
        }
    } else {
        let builder = builder.with_filter_reloading();
        let handle = builder.reload_handle();
        if builder.try_init().is_ok() {
            let _ = RELOAD.set(Box::new(move |f| handle.reload(f).is_ok()));
        }
    }
}

/// Changes the log level at run time (memcached's `verbosity` command), overriding `RUST_LOG`.
/// False when [`init`] did not install the subscriber.
pub fn set_verbosity(verbosity: u8) -> bool {
    RELOAD
        .get()
        .is_some_and(|reload| reload(EnvFilter::new(level_for(verbosity))))
}

fn level_for(verbosity: u8) -> &'static str {
    match verbosity {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_maps_to_levels() {
        assert_eq!(level_for(0), "warn");
        assert_eq!(level_for(1), "info");
        assert_eq!(level_for(2), "debug");
        assert_eq!(level_for(3), "trace");
        assert_eq!(level_for(200), "trace");
    }

    #[test]
    fn init_twice_is_harmless() {
        init(1, false);
        init(3, true);
        tracing::info!("still logging after a second init");
        assert!(tracing::dispatcher::has_been_set());
        // Whichever test installed the subscriber, its filter can be swapped at run time.
        if RELOAD.get().is_some() {
            assert!(set_verbosity(2));
            assert!(tracing::enabled!(tracing::Level::DEBUG));
            assert!(set_verbosity(0));
            assert!(!tracing::enabled!(tracing::Level::INFO));
        }
    }
}
