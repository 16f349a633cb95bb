//! An app's bundle: the files of its directory that get deployed, checked against the gates
//! that need no Python (no native code, no links or special files, size limits), and
//! identified by a digest of their names, modes and contents, so the same version with the
//! same content is recognised as such.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Directory and file names never bundled: version control, caches, virtual environments.
pub const ALWAYS_IGNORED: [&str; 12] = [
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".DS_Store",
    ".berthignore",
];

/// File name endings of compiled extension modules: Berth apps are pure Python.
pub const NATIVE_SUFFIXES: [&str; 4] = [".so", ".pyd", ".dylib", ".dll"];

/// Limits of one bundle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Files at most.
    pub max_files: usize,
    /// Bytes per file at most.
    pub max_file_bytes: u64,
    /// Bytes in all at most.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_files: 10_000,
            max_file_bytes: 32 << 20,
            max_total_bytes: 256 << 20,
        }
    }
}

/// One bundled file.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Relative path with `/` separators.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Executable by its owner.
    pub executable: bool,
}

/// The files of a bundle, in path order, and their digest.
#[derive(Debug, Clone, Serialize)]
pub struct Bundle {
    /// The app's directory.
    #[serde(skip)]
    pub root: PathBuf,
    /// The files.
    pub files: Vec<Entry>,
    /// Their bytes together.
    pub total_bytes: u64,
    /// `sha256:<hex>` over every file's path, mode and content, in path order.
    pub digest: String,
}

/// One thing that keeps a directory from being a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file concerned (relative), or empty for the bundle as a whole.
    pub path: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Patterns of `.berthignore`: one per line, `#` comments; a pattern without `/` matches a
/// file or directory name anywhere, one with a `/` (leading, or inside) the path from the
/// root, a directory with all below it; `*` and `?` glob within a name.
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    /// (anchored at the root, pattern without leading and trailing `/`)
    patterns: Vec<(bool, String)>,
}

impl Ignore {
    /// Reads `dir/.berthignore` (none: nothing extra ignored).
    pub fn load(dir: &Path) -> io::Result<Ignore> {
        match fs::read_to_string(dir.join(".berthignore")) {
            Ok(text) => Ok(Ignore::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(e),
        }
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let p = l.trim_start_matches('/').trim_end_matches('/');
                (l.starts_with('/') || p.contains('/'), p.to_string())
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        Ignore { patterns }
    }

    /// Whether the relative path `rel` (with `/`) is ignored.
    pub fn matches(&self, rel: &str) -> bool {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if ALWAYS_IGNORED.contains(&name) || name.ends_with(".pyc") {
            return true;
        }
        self.patterns.iter().any(|(anchored, p)| {
            if *anchored {
                glob_path(p, rel)
            } else {
                glob(p.as_bytes(), name.as_bytes())
            }
        })
    }
}

fn glob_path(pattern: &str, path: &str) -> bool {
    let ps: Vec<&str> = pattern.split('/').collect();
    let xs: Vec<&str> = path.split('/').collect();
    // A pattern naming a directory also covers everything below it.
    ps.len() <= xs.len()
        && ps
            .iter()
            .zip(&xs)
            .all(|(p, x)| glob(p.as_bytes(), x.as_bytes()))
}

/// `*` (any run) and `?` (one byte) within one name.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether the first bytes are those of a native executable or library (ELF, thin Mach-O;
/// Windows' PE has a too common prefix to judge by, and its `.pyd`/`.dll` names are caught).
fn is_native_code(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
        || head.starts_with(&[0xfe, 0xed, 0xfa, 0xce])
        || head.starts_with(&[0xfe, 0xed, 0xfa, 0xcf])
        || head.starts_with(&[0xce, 0xfa, 0xed, 0xfe])
        || head.starts_with(&[0xcf, 0xfa, 0xed, 0xfe])
}

fn native_name(name: &str) -> bool {
    NATIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.contains(".so.")
        || (name.ends_with(".whl") && !name.ends_with("-none-any.whl"))
}

/// Walks `root` and checks every file; the bundle when nothing is wrong, else every problem.
pub fn collect(root: &Path, limits: &Limits) -> Result<Bundle, Vec<Problem>> {
    let mut problems = Vec::new();
    let ignore = match Ignore::load(root) {
        Ok(i) => i,
        Err(e) => {
            return Err(vec![Problem {
                path: ".berthignore".into(),
                message: format!("cannot read it: {e}"),
            }])
        }
    };
    let mut files = Vec::new();
    walk(root, "", &ignore, &mut files, &mut problems);
    files.sort_by(|a: &(String, PathBuf, fs::Metadata), b| a.0.cmp(&b.0));
    if files.len() > limits.max_files {
        problems.push(Problem {
            path: String::new(),
            message: format!(
                "{} files, over the limit of {}: list what is not needed in .berthignore",
                files.len(),
                limits.max_files
            ),
        });
    }
    let mut hasher = Sha256::new();
    let mut entries = Vec::with_capacity(files.len());
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for (rel, path, meta) in files {
        let size = meta.len();
        total += size;
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if native_name(name) {
            problems.push(Problem {
                path: rel.clone(),
                message: "a compiled extension: Berth apps are pure Python (vendor a \
                          pure-Python alternative, or remove it)"
                    .into(),
            });
            continue;
        }
        if size > limits.max_file_bytes {
            problems.push(Problem {
                path: rel.clone(),
                message: format!(
                    "{size} bytes, over the per-file limit of {}: keep large data in blobs",
                    limits.max_file_bytes
                ),
            });
            continue;
        }
        let executable = {
            use std::os::unix::fs::PermissionsExt;
            meta.permissions().mode() & 0o100 != 0
        };
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                problems.push(Problem {
                    path: rel.clone(),
                    message: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        let mut file_hash = Sha256::new();
        let mut first = true;
        let mut read_error = None;
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if first && is_native_code(&buf[..n.min(4)]) && n >= 4 {
                        read_error = Some(
                            "native machine code (an executable or a shared library): Berth \
                             apps are pure Python"
                                .to_string(),
                        );
                        break;
                    }
                    first = false;
                    file_hash.update(&buf[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    read_error = Some(format!("cannot be read: {e}"));
                    break;
                }
            }
        }
        if let Some(message) = read_error {
            problems.push(Problem {
                path: rel.clone(),
                message,
            });
            continue;
        }
        hasher.update(rel.as_bytes());
        hasher.update([0, u8::from(executable)]);
        hasher.update(size.to_le_bytes());
        hasher.update(file_hash.finalize());
        entries.push(Entry {
            path: rel,
            size,
            executable,
        });
    }
    if total > limits.max_total_bytes {
        problems.push(Problem {
            path: String::new(),
            message: format!(
                "{total} bytes in all, over the limit of {}: list what is not needed in \
                 .berthignore and keep large data in blobs",
                limits.max_total_bytes
            ),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Bundle {
        root: root.to_path_buf(),
        files: entries,
        total_bytes: total,
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
    })
}

fn walk(
    dir: &Path,
    prefix: &str,
    ignore: &Ignore,
    files: &mut Vec<(String, PathBuf, fs::Metadata)>,
    problems: &mut Vec<Problem>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Problem {
                path: prefix.trim_end_matches('/').to_string(),
                message: format!("cannot list the directory: {e}"),
            });
            return;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                problems.push(Problem {
                    path: prefix.trim_end_matches('/').to_string(),
                    message: format!("cannot list the directory: {e}"),
                });
                continue;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            problems.push(Problem {
                path: format!("{prefix}{}", name.to_string_lossy()),
                message: "the name is not UTF-8: rename it".into(),
            });
            continue;
        };
        let rel = format!("{prefix}{name}");
        if ignore.matches(&rel) {
            continue;
        }
        let meta = match fs::symlink_metadata(entry.path()) {
            Ok(m) => m,
            Err(e) => {
                problems.push(Problem {
                    path: rel,
                    message: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            problems.push(Problem {
                path: rel,
                message: "a symbolic link: bundles hold regular files only (copy the target \
                          in, or list the link in .berthignore)"
                    .into(),
            });
        } else if kind.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), ignore, files, problems);
        } else if kind.is_file() {
            files.push((rel, entry.path(), meta));
        } else {
            problems.push(Problem {
                path: rel,
                message: "not a regular file (a socket, pipe or device)".into(),
            });
        }
    }
}

/// Whether the bundle holds the module of `entry` (`a.b:c` needs `a/b.py` or
/// `a/b/__init__.py`).
pub fn has_module(bundle: &Bundle, entry: &str) -> bool {
    let module = entry
        .split(':')
        .next()
        .unwrap_or_default()
        .replace('.', "/");
    let candidates = [format!("{module}.py"), format!("{module}/__init__.py")];
    bundle.files.iter().any(|f| candidates.contains(&f.path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, data: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    fn app() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "berth.toml", b"name = \"a\"\n");
        write(d.path(), "main.py", b"def application(e, s): ...\n");
        write(d.path(), "pkg/__init__.py", b"");
        write(d.path(), "pkg/__pycache__/x.cpython-311.pyc", b"\0\0");
        write(d.path(), ".git/HEAD", b"ref");
        d
    }

    #[test]
    fn collects_files_in_order_and_skips_caches() {
        let d = app();
        let b = collect(d.path(), &Limits::default()).unwrap();
        let paths: Vec<_> = b.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["berth.toml", "main.py", "pkg/__init__.py"]);
        assert!(has_module(&b, "main:application"));
        assert!(has_module(&b, "pkg:app"));
        assert!(!has_module(&b, "other:app"));
        assert!(b.digest.starts_with("sha256:"));
    }

    #[test]
    fn the_digest_follows_content_names_and_modes_only() {
        let d = app();
        let one = collect(d.path(), &Limits::default()).unwrap().digest;
        write(d.path(), "pkg/__pycache__/y.pyc", b"ignored");
        assert_eq!(collect(d.path(), &Limits::default()).unwrap().digest, one);
        write(d.path(), "main.py", b"def application(e, s): return []\n");
        let two = collect(d.path(), &Limits::default()).unwrap().digest;
        assert_ne!(two, one);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.path().join("main.py"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(collect(d.path(), &Limits::default()).unwrap().digest, two);
    }

    #[test]
    fn native_code_links_and_sizes_are_refused_all_at_once() {
        let d = app();
        write(
            d.path(),
            "fast.cpython-311-x86_64-linux-gnu.so",
            b"whatever",
        );
        write(d.path(), "lib/helper.bin", b"\x7fELF\x02\x01\x01rest");
        write(
            d.path(),
            "wheels/numpy-2.0-cp311-cp311-linux_x86_64.whl",
            b"PK",
        );
        write(d.path(), "wheels/six-1.16.0-py2.py3-none-any.whl", b"PK");
        write(d.path(), "big.dat", &vec![b'x'; 2048]);
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("passwd")).unwrap();
        let limits = Limits {
            max_file_bytes: 1024,
            ..Limits::default()
        };
        let problems = collect(d.path(), &limits).unwrap_err();
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"fast.cpython-311-x86_64-linux-gnu.so"),
            "{paths:?}"
        );
        assert!(paths.contains(&"lib/helper.bin"), "{paths:?}");
        assert!(paths.contains(&"wheels/numpy-2.0-cp311-cp311-linux_x86_64.whl"));
        assert!(!paths.contains(&"wheels/six-1.16.0-py2.py3-none-any.whl"));
        assert!(paths.contains(&"big.dat"));
        assert!(paths.contains(&"passwd"));
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn limits_on_count_and_total() {
        let d = app();
        let limits = Limits {
            max_files: 2,
            max_total_bytes: 10,
            ..Limits::default()
        };
        let problems = collect(d.path(), &limits).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems.iter().all(|p| p.path.is_empty()));
    }

    #[test]
    fn berthignore_patterns() {
        let i = Ignore::parse("# comment\n*.log\n/data/\ntests\ndocs/*.md\n");
        assert!(i.matches("app.log") && i.matches("sub/x.log"));
        assert!(i.matches("data") && i.matches("data/big.csv"));
        assert!(!i.matches("sub/data"));
        assert!(i.matches("tests") && i.matches("pkg/tests"));
        assert!(i.matches("docs/a.md") && !i.matches("docs/sub/a.md"));
        assert!(!i.matches("main.py"));
        assert!(glob(b"a*b?c", b"axxbyc") && !glob(b"a*b?c", b"axxbc"));
    }
}
