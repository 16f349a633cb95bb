//! What opening a data directory checks and repairs besides the metadata log: the `FORMAT`
//! header, what the metadata references (usage, volume ends, content files, bucket objects),
//! and content files nothing references.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use redb::{Database, ReadableTable};

use crate::store::meta::{self, ContentMeta, Location};
use crate::store::{meta_err, sync_dir, volume, ContentId, Error, Paths, Result, FORMAT};

/// Creates `FORMAT` in a new directory, or checks it in an existing one.
pub(super) fn check_format(root: &Path) -> Result<()> {
    let path = root.join("FORMAT");
    match fs::read_to_string(&path) {
        Ok(s) if s == FORMAT => Ok(()),
        Ok(s) => Err(Error::Format(format!("{}: {:?}", path.display(), s.trim()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A crash during the first open may have left FORMAT.tmp behind, nothing else.
            let mut entries = fs::read_dir(root)?;
            if entries.any(|e| e.map_or(true, |e| e.file_name() != "FORMAT.tmp")) {
                return Err(Error::Format(format!(
                    "{} is not empty and has no FORMAT file",
                    root.display()
                )));
            }
            let tmp = root.join("FORMAT.tmp");
            let mut f = File::create(&tmp)?;
            f.write_all(FORMAT.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(root)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) type Scan = (
    HashMap<String, u64>,
    HashMap<u32, u64>,
    HashSet<ContentId>,
    HashSet<u64>,
);

/// Reads what recovery needs: usage per app, the end of the last referenced record of each
/// volume, the set of content stored as files, and the bucket objects referenced.
pub(super) fn scan_metadata(db: &Database) -> Result<Scan> {
    let r = db.begin_read().map_err(meta_err)?;
    let mut used = HashMap::new();
    for item in r
        .open_table(meta::USAGE)
        .map_err(meta_err)?
        .iter()
        .map_err(meta_err)?
    {
        let (k, v) = item.map_err(meta_err)?;
        used.insert(k.value().to_string(), v.value());
    }
    let mut ends: HashMap<u32, u64> = HashMap::new();
    let mut files = HashSet::new();
    let mut remote = HashSet::new();
    for item in r
        .open_table(meta::CONTENT)
        .map_err(meta_err)?
        .iter()
        .map_err(meta_err)?
    {
        let (k, v) = item.map_err(meta_err)?;
        let id = ContentId(
            k.value()
                .try_into()
                .map_err(|_| Error::Corrupt("content key".into()))?,
        );
        let c = ContentMeta::decode(v.value())?;
        match c.location {
            Location::Volume { number, offset } => {
                let end = offset + volume::RECORD_HEADER_LEN + c.size;
                let e = ends.entry(number).or_insert(0);
                *e = (*e).max(end);
            }
            Location::File => {
                files.insert(id);
            }
            Location::Remote { nonce, .. } => {
                remote.insert(nonce);
            }
        }
    }
    Ok((used, ends, files, remote))
}

/// Deletes content files that no metadata points at: renamed in before a crash cut off
/// their commit, so they were never acknowledged.
pub(super) fn sweep_orphans(paths: &Paths, files: &HashSet<ContentId>) -> Result<()> {
    for shard in fs::read_dir(&paths.objects)? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name();
            let keep = format!("sha256:{}", name.to_string_lossy())
                .parse::<ContentId>()
                .is_ok_and(|id| files.contains(&id));
            if !keep {
                tracing::info!(path = %entry.path().display(), "removing unreferenced content file");
                fs::remove_file(entry.path())?;
            }
        }
    }
    Ok(())
}
