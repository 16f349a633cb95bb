//! The bundle as it travels from `berth deploy` to `berthd`: an uncompressed ustar archive of
//! the bundle's files only, in path order, with mtime 0 and owner 0, so the same files always
//! make the same bytes (and the same SHA-256, under which berthd stores it).
//!
//! Unpacking trusts nothing: only regular files with relative, normalised paths; the same
//! limits as [`crate::bundle::collect`]; modes reduced to 0644/0755.

use std::io::{self, Read};
use std::path::{Component, Path};

use crate::bundle::{Bundle, Limits};

/// Packs `bundle`'s files (read from `bundle.root`) into a tar.
pub fn pack(bundle: &Bundle) -> io::Result<Vec<u8>> {
    let mut out = tar::Builder::new(Vec::with_capacity(bundle.total_bytes as usize + 4096));
    out.mode(tar::HeaderMode::Deterministic);
    for entry in &bundle.files {
        let data = std::fs::read(bundle.root.join(&entry.path))?;
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(if entry.executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        out.append_data(&mut header, &entry.path, data.as_slice())?;
    }
    out.into_inner()
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// Not a tar, or a member that a bundle cannot hold.
    #[error("the bundle is not acceptable: {0}")]
    Refused(String),
    /// Writing the files failed.
    #[error("unpacking the bundle: {0}")]
    Io(#[from] io::Error),
}

/// Unpacks `archive` into `dest` (which must exist and be empty), enforcing `limits`.
pub fn unpack(archive: &[u8], dest: &Path, limits: &Limits) -> Result<(), UnpackError> {
    use std::os::unix::fs::PermissionsExt;
    let mut ar = tar::Archive::new(archive);
    let mut files = 0usize;
    let mut total = 0u64;
    for member in ar.entries()? {
        let mut member = member.map_err(|e| UnpackError::Refused(format!("bad archive: {e}")))?;
        let kind = member.header().entry_type();
        let path = member
            .path()
            .map_err(|e| UnpackError::Refused(format!("bad member name: {e}")))?
            .into_owned();
        let shown = path.display().to_string();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Directory => continue,
            other => {
                return Err(UnpackError::Refused(format!(
                    "{shown}: only regular files may be bundled (found {other:?})"
                )))
            }
        }
        if path.as_os_str().is_empty()
            || !path.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(UnpackError::Refused(format!(
                "{shown}: member paths must be relative, without '..'"
            )));
        }
        let size = member.header().size().unwrap_or(u64::MAX);
        files += 1;
        total = total.saturating_add(size);
        if files > limits.max_files {
            return Err(UnpackError::Refused(format!(
                "more than {} files",
                limits.max_files
            )));
        }
        if size > limits.max_file_bytes {
            return Err(UnpackError::Refused(format!(
                "{shown}: {size} bytes, more than the {} allowed per file",
                limits.max_file_bytes
            )));
        }
        if total > limits.max_total_bytes {
            return Err(UnpackError::Refused(format!(
                "more than {} bytes in all",
                limits.max_total_bytes
            )));
        }
        let executable = member.header().mode().unwrap_or(0) & 0o100 != 0;
        let target = dest.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut member).take(size).read_to_end(&mut data)?;
        // create_new: a second member with the same name is refused, not merged.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    UnpackError::Refused(format!("{shown}: appears twice"))
                }
                _ => UnpackError::Io(e),
            })?;
        io::Write::write_all(&mut f, &data)?;
        f.set_permissions(std::fs::Permissions::from_mode(if executable {
            0o755
        } else {
            0o644
        }))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::collect;

    #[test]
    fn pack_is_deterministic_and_unpacks_to_the_same_digest() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("main.py"), "app = None\n").unwrap();
        std::fs::create_dir(src.path().join("pkg")).unwrap();
        std::fs::write(src.path().join("pkg/__init__.py"), "").unwrap();
        let bundle = collect(src.path(), &Limits::default()).unwrap();
        let one = pack(&bundle).unwrap();
        assert_eq!(pack(&bundle).unwrap(), one);
        let dest = tempfile::tempdir().unwrap();
        unpack(&one, dest.path(), &Limits::default()).unwrap();
        let again = collect(dest.path(), &Limits::default()).unwrap();
        assert_eq!(again.digest, bundle.digest);
    }

    fn archive_with(name: &str, kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // Write the name bytes directly: set_path refuses '..' itself.
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_members_are_refused() {
        for (name, kind) in [
            ("../evil.py", tar::EntryType::Regular),
            ("/etc/evil.py", tar::EntryType::Regular),
            ("link", tar::EntryType::Symlink),
            ("dev", tar::EntryType::Char),
        ] {
            let dest = tempfile::tempdir().unwrap();
            let err = unpack(
                &archive_with(name, kind, b"x"),
                dest.path(),
                &Limits::default(),
            )
            .unwrap_err();
            assert!(matches!(err, UnpackError::Refused(_)), "{name}: {err}");
        }
        let limits = Limits {
            max_file_bytes: 2,
            ..Limits::default()
        };
        let dest = tempfile::tempdir().unwrap();
        let err = unpack(
            &archive_with("big.py", tar::EntryType::Regular, b"xyz"),
            dest.path(),
            &limits,
        )
        .unwrap_err();
        assert!(err.to_string().contains("per file"), "{err}");
    }
}
