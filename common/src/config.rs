//! Config files: TOML loading with errors that point at the offending line and key, and the
//! `"64MiB"` / `"30s"` value types every service's config uses.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a config could not be loaded or printed.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the config's shape.
    #[error("{origin}:{line}:{column}: {message}")]
    Parse {
        /// The file name, or a description of where the text came from.
        origin: String,
        /// 1-based line of the error (0 when unknown).
        line: usize,
        /// 1-based column of the error (0 when unknown).
        column: usize,
        /// What is wrong, e.g. "unknown field `cache_byts`, expected one of …".
        message: String,
    },
    /// The config could not be written as TOML.
    #[error("cannot print config as TOML: {0}")]
    Serialize(#[from] toml::ser::Error),
}

/// Reads and parses a TOML config file; `None` gives `T::default()`.
pub fn load_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    from_toml_str(&text, &path.display().to_string())
}

/// Parses TOML text; `origin` names it in errors (a file name, `"<tenants>"`, …).
pub fn from_toml_str<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = match e.span() {
            Some(span) => line_column(text, span.start),
            None => (0, 0),
        };
        ConfigError::Parse {
            origin: origin.to_owned(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })
}

/// Writes a config as TOML, for `--print-config`.
pub fn to_toml<T: Serialize>(cfg: &T) -> Result<String, ConfigError> {
    Ok(toml::to_string_pretty(cfg)?)
}

/// `--print-config` for `binary`: the effective configuration as TOML on standard output;
/// the exit code for `main` to return (2, with the reason on standard error, when the
/// configuration cannot be written as TOML).
pub fn print_config<T: Serialize>(binary: &str, cfg: &T) -> std::process::ExitCode {
    match to_toml(cfg) {
        Ok(text) => {
            print!("{text}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{binary}: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// A number of bytes, written `"64MiB"`, `"1GiB"`, `"10MB"` (decimal), `"1024B"` or a plain
/// integer in config files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("KB", 1_000),
    ("B", 1),
];

impl ByteSize {
    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        Self(n << 10)
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n << 20)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n << 30)
    }

    /// The number of bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// Why a size string was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("invalid size {input:?}: {reason} (write e.g. \"64MiB\", \"1GiB\", \"10MB\" or \"1024B\")")]
pub struct ParseByteSizeError {
    input: String,
    reason: &'static str,
}

impl FromStr for ByteSize {
    type Err = ParseByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseByteSizeError {
            input: s.to_owned(),
            reason,
        };
        let trimmed = s.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        if digits.is_empty() {
            return Err(err("it does not start with a number"));
        }
        let n: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
        let unit = unit.trim_start();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|&(_, m)| m)
                .ok_or_else(|| err("unknown unit; use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB"))?
        };
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| err("it does not fit in 64 bits"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly (binary units win a tie), so that
    /// parsing the output gives the same size back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0B");
        }
        let (name, m) = UNITS
            .iter()
            .filter(|(_, m)| self.0.is_multiple_of(*m))
            .min_by_key(|(_, m)| self.0 / m)
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{}", self.0 / m, name)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;
        impl Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"64MiB\", \"1GiB\", \"10MB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("invalid size {v}: a size cannot be negative")))
            }
        }
        d.deserialize_any(ByteSizeVisitor)
    }
}

/// A duration, written `"30s"`, `"500ms"`, `"7d"` or `"1h 30m"` in config files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }

    /// `n` days.
    pub const fn days(n: u64) -> Self {
        Self(Duration::from_secs(n * 86_400))
    }

    /// The duration.
    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim()).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"30s\", \"500ms\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(|e| {
                    E::custom(format!(
                        "invalid duration {v:?}: {e} (write e.g. \"30s\", \"500ms\" or \"7d\")"
                    ))
                })
            }
        }
        d.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_size_parses_units() {
        let cases = [
            ("64MiB", 64 << 20),
            ("1GiB", 1 << 30),
            ("100GiB", 100 << 30),
            ("512KiB", 512 << 10),
            ("10MB", 10_000_000),
            ("1024B", 1024),
            ("1024", 1024),
            ("0", 0),
            ("2TiB", 2 << 40),
            ("3kb", 3000),
            (" 7 mib ", 7 << 20),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn byte_size_refuses_garbage() {
        for text in [
            "",
            "MiB",
            "-1",
            "1.5GiB",
            "10M",
            "10 parsecs",
            "99999999999999999999",
            "20000000TiB",
        ] {
            assert!(
                text.parse::<ByteSize>().is_err(),
                "{text:?} should be refused"
            );
        }
        let msg = "10M".parse::<ByteSize>().unwrap_err().to_string();
        assert!(
            msg.contains("unknown unit") && msg.contains("\"10M\""),
            "{msg}"
        );
    }

    #[test]
    fn byte_size_displays_and_round_trips() {
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize::gib(100).to_string(), "100GiB");
        assert_eq!(ByteSize(10_000_000).to_string(), "10MB");
        assert_eq!(ByteSize(1_000_000_000).to_string(), "1GB");
        assert_eq!(ByteSize(2_048_000).to_string(), "2000KiB");
        assert_eq!(ByteSize(1023).to_string(), "1023B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        for n in [
            0,
            1,
            999,
            1000,
            1024,
            1536,
            3 << 20,
            5_000_000,
            u64::MAX,
            12_345_678_901,
        ] {
            let shown = ByteSize(n).to_string();
            assert_eq!(shown.parse::<ByteSize>(), Ok(ByteSize(n)), "{shown}");
        }
    }

    #[derive(Deserialize, Serialize, Default, Debug, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        /// A size.
        cache_bytes: ByteSize,
        /// A duration.
        timeout: HumanDuration,
        /// A plain number.
        threads: u32,
    }

    #[test]
    fn toml_values_both_ways() {
        let text = "cache_bytes = \"64MiB\"\ntimeout = \"7d\"\nthreads = 4\n";
        let cfg: Sample = from_toml_str(text, "t.toml").unwrap();
        assert_eq!(cfg.cache_bytes, ByteSize::mib(64));
        assert_eq!(cfg.timeout, HumanDuration::days(7));
        let printed = to_toml(&cfg).unwrap();
        assert!(printed.contains("cache_bytes = \"64MiB\""), "{printed}");
        assert_eq!(from_toml_str::<Sample>(&printed, "printed").unwrap(), cfg);

        let cfg: Sample = from_toml_str("cache_bytes = 1048576\ntimeout = \"500ms\"", "t").unwrap();
        assert_eq!(cfg.cache_bytes, ByteSize::mib(1));
        assert_eq!(cfg.timeout.as_duration(), Duration::from_millis(500));
    }

    #[test]
    fn toml_errors_name_file_line_and_key() {
        let text = "threads = 4\ncache_byts = \"64MiB\"\n";
        let err = from_toml_str::<Sample>(text, "cache.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cache.toml:2:1: "), "{msg}");
        assert!(msg.contains("unknown field `cache_byts`"), "{msg}");

        let err = from_toml_str::<Sample>("timeout = \"soon\"", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:1:11: ") && err.contains("invalid duration \"soon\""),
            "{err}"
        );

        let err = from_toml_str::<Sample>("\n\ncache_bytes = \"lots\"", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("c.toml:3:") && err.contains("invalid size \"lots\""),
            "{err}"
        );

        let err = from_toml_str::<Sample>("cache_bytes = -5", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be negative"), "{err}");

        let err = from_toml_str::<Sample>("threads = [", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:1:"), "{err}");
    }

    #[test]
    fn load_toml_reads_files_and_defaults() {
        assert_eq!(load_toml::<Sample>(None).unwrap(), Sample::default());
        let dir = std::env::temp_dir().join(format!("berth-common-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ok.toml");
        std::fs::write(&path, "threads = 8\n").unwrap();
        assert_eq!(load_toml::<Sample>(Some(&path)).unwrap().threads, 8);

        std::fs::write(&path, "threads = \"eight\"\n").unwrap();
        let msg = load_toml::<Sample>(Some(&path)).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("{}:1:11: ", path.display())),
            "{msg}"
        );

        let missing = dir.join("missing.toml");
        let msg = load_toml::<Sample>(Some(&missing)).unwrap_err().to_string();
        assert!(msg.contains("missing.toml"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 0), (1, 1));
        assert_eq!(line_column("ab\ncdé\nx", 3), (2, 1));
        assert_eq!(line_column("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_column("ab\ncdé\nx", 6), (2, 3));
        assert_eq!(line_column("ab\ncdé\nx", 99), (3, 2));
    }
}
