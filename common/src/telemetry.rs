//! Logging setup shared by every binary: `tracing` events to stderr, filtered by `-v` count or
//! by `RUST_LOG`, as text or as JSON lines for log shippers.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: level warn/info/debug/trace for `verbosity` 0/1/2/3+,
/// unless `RUST_LOG` holds a valid filter. `json` writes one JSON object per event.
/// Calling it again (tests, a library user) is a no-op.
pub fn init(verbosity: u8, json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level_for(verbosity)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // Err only means a subscriber is already installed, which is what a second call expects.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
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
    }
}
