//! Volume compaction: deleting small objects leaves dead records in their volume files, which
//! still take disk space. A volume whose dead share passes a threshold has its live records
//! copied to the active volume (through the committer, so each move is durable before the
//! metadata points at it, and a move that races a delete just leaves a dead copy); the emptied
//! volume is then unlinked. A crash at any point loses nothing: until the metadata commit the
//! old record is the one referenced, after it the new one is, and an unreferenced old volume
//! is removed at the next open.

use std::collections::HashMap;
use std::time::Duration;

use crate::store::commit::{Op, Reply};
use crate::store::meta::Location;
use crate::store::volume::{RECORD_HEADER_LEN, VOLUME_HEADER_LEN};
use crate::store::{ContentId, Error, Result, Store};

/// Records moved per commit request group.
const MOVE_BATCH: usize = 256;

/// How long an unlinked volume stays open for readers that found their location just before
/// it moved.
pub(crate) const RETIRE_GRACE: Duration = Duration::from_secs(60);

/// What one compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Volumes emptied and removed.
    pub volumes: u32,
    /// Live records copied.
    pub moved: u64,
    /// Disk bytes given back (lengths of the removed volume files).
    pub reclaimed_bytes: u64,
    /// The pass stopped early because `stop` said so.
    pub interrupted: bool,
}

/// A record in a volume: (content id, offset, size of the data).
type Record = (ContentId, u64, u64);

/// Content rows read per metadata transaction while looking for a volume's records.
const SCAN_PAGE: usize = 4096;

impl Store {
    /// Compacts every sealed volume whose dead bytes are at least `min_dead_ratio` of its
    /// records (0.0 to 1.0). `stop` is polled between groups of moves.
    pub fn compact(&self, min_dead_ratio: f64, stop: &dyn Fn() -> bool) -> Result<CompactReport> {
        let volumes = &self.inner.volumes;
        volumes.drop_retired(RETIRE_GRACE);
        let mut report = CompactReport::default();
        let live = self.volume_live_bytes()?;
        for (number, len) in volumes.sealed()? {
            let live_bytes = live.get(&number).copied().unwrap_or(0);
            let total = len.saturating_sub(VOLUME_HEADER_LEN);
            let dead = total.saturating_sub(live_bytes);
            if total == 0 || (dead as f64) < min_dead_ratio * total as f64 {
                continue;
            }
            // Page through the content table in key order; moved records point elsewhere
            // afterwards, so the scan never sees them twice.
            let mut after = None;
            let mut left = 0u64;
            loop {
                if stop() {
                    report.interrupted = true;
                    return Ok(report);
                }
                let (records, last) = self.records_in(number, after.as_ref())?;
                let (moved, kept) = self.move_records(number, &records)?;
                report.moved += moved;
                left += kept;
                match last {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
            // Retire only a volume nothing points into any more: a record that could not be
            // read (corrupt) keeps its volume, and so does one a racing write re-used.
            if left == 0 && !live_in(&self.volume_live_bytes()?, number) {
                volumes.retire(number)?;
                report.volumes += 1;
                report.reclaimed_bytes += len;
                tracing::info!(volume = number, bytes = len, "compaction removed a volume");
            }
        }
        Ok(report)
    }

    /// Copies `records` of volume `number` to the active volume and repoints their content.
    /// Returns (moved, left behind because corrupt).
    fn move_records(&self, number: u32, records: &[Record]) -> Result<(u64, u64)> {
        let volumes = &self.inner.volumes;
        let mut ops = Vec::with_capacity(records.len());
        let mut kept = 0;
        for &(id, offset, size) in records {
            let data = match volumes.read(number, offset, &id, size) {
                Ok(d) => d,
                Err(Error::Corrupt(detail)) => {
                    tracing::error!(%id, volume = number, %detail, "compaction found a corrupt record; leaving it");
                    kept += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let to = volumes.append(&id, &data)?;
            ops.push(Op::Relocate {
                id,
                from: (number, offset),
                to,
            });
        }
        let mut moved = 0;
        for r in self.inner.submit_all(ops)? {
            if let Reply::Relocated(true) = r? {
                moved += 1;
            }
        }
        Ok((moved, kept))
    }

    /// Bytes of live records (header included) per volume.
    fn volume_live_bytes(&self) -> Result<HashMap<u32, u64>> {
        let mut out = HashMap::new();
        self.content_scan()?.each(None, |_, cm| {
            if let Location::Volume { number, .. } = cm.location {
                *out.entry(number).or_insert(0) += RECORD_HEADER_LEN + cm.size;
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Up to [`MOVE_BATCH`] records of `volume` among the next [`SCAN_PAGE`] content rows after
    /// `after`; also the last key scanned, or `None` at the end of the table.
    fn records_in(
        &self,
        volume: u32,
        after: Option<&[u8; 32]>,
    ) -> Result<(Vec<Record>, Option<[u8; 32]>)> {
        let mut out = Vec::new();
        let mut scanned = 0;
        let mut last = None;
        self.content_scan()?.each(after, |id, cm| {
            if let Location::Volume { number, offset } = cm.location {
                if number == volume {
                    out.push((id, offset, cm.size));
                }
            }
            scanned += 1;
            if scanned >= SCAN_PAGE || out.len() >= MOVE_BATCH {
                last = Some(id.0);
                return Ok(false);
            }
            Ok(true)
        })?;
        Ok((out, last))
    }
}

fn live_in(live: &HashMap<u32, u64>, volume: u32) -> bool {
    live.get(&volume).is_some_and(|b| *b > 0)
}
