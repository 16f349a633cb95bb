//! What the committer and the readers see of the metadata: the rows changed since the
//! database's last commit, in memory (and durable in the metadata log, [`crate::store::wal`]),
//! over a redb read snapshot.
//!
//! Two layers: `active` takes each group of changes once the log has made them durable;
//! `frozen` is the previous active layer while the checkpointer thread writes it into redb
//! ([`crate::store::checkpoint`]) and is dropped once that commit is durable. A lookup tries
//! active, then frozen, then the snapshot. A reader holds the overlay's read lock while it
//! looks rows up and while it takes its snapshot (the database's shared one,
//! [`MetaDb::snapshot`], which the checkpointer replaces before it drops the frozen layer), so
//! dropping the frozen layer (which waits for the write lock) can never fall between the two:
//! a row missing from both layers is in the snapshot, or was never changed since.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard};
use redb::{ReadOnlyTable, ReadTransaction};

use crate::store::meta::{self, Change, ContentMeta, ReadRows, Table, TABLES};
use crate::store::metadb::{MetaDb, Snapshot};
use crate::store::{meta_err, ContentId, Error, Result};

/// Changed rows of one table: the new value, or `None` for a removed row.
pub(crate) type Rows = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Changed rows of every table.
pub(crate) type Layer = [Rows; TABLES];

#[derive(Default)]
struct Layers {
    active: Layer,
    frozen: Option<Arc<Layer>>,
}

#[derive(Default)]
pub(crate) struct Overlay {
    layers: RwLock<Layers>,
}

impl Overlay {
    /// Makes durable changes visible.
    pub fn publish(&self, changes: Vec<Change>) {
        let mut l = self.layers.write();
        for c in changes {
            l.active[c.table as usize].insert(c.key, c.value);
        }
    }

    /// Turns the active layer into the frozen one and returns it, for the checkpointer.
    /// `None` if a frozen layer is still being written or there is nothing to freeze.
    pub fn freeze(&self) -> Option<Arc<Layer>> {
        let mut l = self.layers.write();
        if l.frozen.is_some() || l.active.iter().all(|r| r.is_empty()) {
            return None;
        }
        let frozen = Arc::new(std::mem::take(&mut l.active));
        l.frozen = Some(frozen.clone());
        Some(frozen)
    }

    /// Drops the frozen layer: a durable commit now holds it.
    pub fn thaw(&self) {
        self.layers.write().frozen = None;
    }

    /// A consistent view. Hold it briefly: publishing waits for it.
    pub fn view<'a>(&'a self, db: &'a MetaDb) -> View<'a> {
        View {
            layers: self.layers.read(),
            db,
            snapshot: std::cell::OnceCell::new(),
        }
    }

    /// An owned view of the content table for long scans (compaction, scrub): a copy of its
    /// changed rows and a snapshot taken together.
    pub fn content_scan(&self, db: &MetaDb) -> Result<ContentScan> {
        let l = self.layers.read();
        let mut rows = l
            .frozen
            .as_ref()
            .map(|f| f[Table::Content as usize].clone())
            .unwrap_or_default();
        for (k, v) in &l.active[Table::Content as usize] {
            rows.insert(k.clone(), v.clone());
        }
        let txn = db.begin_read()?;
        Ok(ContentScan { rows, txn })
    }
}

/// The overlay's layers over a snapshot, under the overlay's read lock.
pub(crate) struct View<'a> {
    layers: RwLockReadGuard<'a, Layers>,
    db: &'a MetaDb,
    snapshot: std::cell::OnceCell<Arc<Snapshot>>,
}

/// A byte-keyed, byte-valued table of a snapshot.
type BytesTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

impl View<'_> {
    /// The database's snapshot, taken once per view (under the overlay's read lock).
    fn snapshot(&self) -> Result<&Snapshot> {
        if let Some(s) = self.snapshot.get() {
            return Ok(s);
        }
        let s = self.db.snapshot()?;
        Ok(self.snapshot.get_or_init(|| s))
    }

    /// The overlay's row `key`, if a layer has it.
    fn layered(&self, table: Table, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        let i = table as usize;
        self.layers.active[i]
            .get(key)
            .or_else(|| self.layers.frozen.as_ref().and_then(|f| f[i].get(key)))
    }

    /// Visits the live rows of `table` (content, refs or objects) from `from` on, in key
    /// order, with `pending` (uncommitted changes of the committer's batch) over the layers,
    /// until `visit` returns `Ok(false)`.
    pub fn rows_from(
        &self,
        table: Table,
        from: &[u8],
        pending: Option<&Rows>,
        visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let snap = self.snapshot()?;
        let t = match table {
            Table::Content => &snap.content,
            Table::Refs => &snap.refs,
            Table::Objects => &snap.objects,
            Table::Usage | Table::Quarantine => {
                return Err(Error::Corrupt("range scan of a u64 table".into()))
            }
        };
        let below = t.range(from..).map_err(meta_err)?.map(|item| {
            item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .map_err(meta_err)
        });
        let i = table as usize;
        let mut ranges = Vec::with_capacity(3);
        if let Some(p) = pending {
            ranges.push(p.range(from.to_vec()..));
        }
        ranges.push(self.layers.active[i].range(from.to_vec()..));
        if let Some(f) = &self.layers.frozen {
            ranges.push(f[i].range(from.to_vec()..));
        }
        merge(below, Layered::new(ranges), visit)
    }

    /// Visits the live object-table keys from `from` on, in byte order, until `visit` says
    /// stop.
    pub fn object_keys_from(
        &self,
        from: &[u8],
        mut visit: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        self.rows_from(Table::Objects, from, None, |k, _| Ok(visit(k)))
    }
}

/// A range of one overlay table.
type RowsRange<'o> = std::collections::btree_map::Range<'o, Vec<u8>, Option<Vec<u8>>>;

impl ReadRows for View<'_> {
    fn row(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.layered(table, key) {
            return Ok(v.clone());
        }
        let snap = self.snapshot()?;
        let bytes = |t: &BytesTable| -> Result<Option<Vec<u8>>> {
            let v = t.get(key).map_err(meta_err)?;
            Ok(v.map(|v| v.value().to_vec()))
        };
        match table {
            Table::Content => bytes(&snap.content),
            Table::Refs => bytes(&snap.refs),
            Table::Objects => bytes(&snap.objects),
            Table::Usage => {
                let app = std::str::from_utf8(key)
                    .map_err(|_| Error::Corrupt("usage key is not UTF-8".into()))?;
                let v = snap.usage.get(app).map_err(meta_err)?;
                Ok(v.map(|v| v.value().to_le_bytes().to_vec()))
            }
            Table::Quarantine => {
                let v = snap.quarantine.get(key).map_err(meta_err)?;
                Ok(v.map(|v| v.value().to_le_bytes().to_vec()))
            }
        }
    }
}

/// Several overlay ranges merged in key order; on equal keys the earliest range wins.
struct Layered<'o> {
    ranges: Vec<std::iter::Peekable<RowsRange<'o>>>,
}

impl<'o> Layered<'o> {
    fn new(ranges: Vec<RowsRange<'o>>) -> Self {
        Layered {
            ranges: ranges.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl<'o> Iterator for Layered<'o> {
    type Item = (&'o Vec<u8>, &'o Option<Vec<u8>>);

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, &'o Vec<u8>)> = None;
        for (i, r) in self.ranges.iter_mut().enumerate() {
            if let Some(&(k, _)) = r.peek() {
                if best.is_none_or(|(_, b)| k < b) {
                    best = Some((i, k));
                }
            }
        }
        let (winner, key) = best?;
        let item = self.ranges[winner].next();
        for r in self.ranges.iter_mut().skip(winner + 1) {
            if r.peek().is_some_and(|&(k, _)| k == key) {
                r.next();
            }
        }
        item
    }
}

/// The content table's changed rows over a snapshot, owned (no lock held).
pub(crate) struct ContentScan {
    rows: Rows,
    txn: ReadTransaction,
}

impl ContentScan {
    /// Visits live content rows after `after` (all if `None`), in id order, until `visit`
    /// returns `Ok(false)`.
    pub fn each(
        &self,
        after: Option<&[u8; 32]>,
        mut visit: impl FnMut(ContentId, ContentMeta) -> Result<bool>,
    ) -> Result<()> {
        use std::ops::Bound::{Excluded, Unbounded};
        let t = self.txn.open_table(meta::CONTENT).map_err(meta_err)?;
        let lower = match after {
            Some(a) => Excluded(&a[..]),
            None => Unbounded,
        };
        let below = t
            .range::<&[u8]>((lower, Unbounded))
            .map_err(meta_err)?
            .map(|item| {
                item.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                    .map_err(meta_err)
            });
        let lower = after.map_or(Unbounded, |a| Excluded(a.to_vec()));
        let above = self.rows.range::<Vec<u8>, _>((lower, Unbounded));
        merge(below, above, |k, v| {
            let id: [u8; 32] = k
                .try_into()
                .map_err(|_| Error::Corrupt("content key is not 32 bytes".into()))?;
            visit(ContentId(id), ContentMeta::decode(v)?)
        })
    }
}

/// Merges a snapshot's rows with the overlay's (which win on equal keys; `None` hides the
/// row), both in key order, until `visit` returns `Ok(false)`.
fn merge<'o>(
    below: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
    above: impl Iterator<Item = (&'o Vec<u8>, &'o Option<Vec<u8>>)>,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
) -> Result<()> {
    let mut below = below.peekable();
    let mut above = above.peekable();
    loop {
        let take_above = match (below.peek(), above.peek()) {
            (None, None) => return Ok(()),
            // A read error of the snapshot: returned as it is.
            (Some(Err(_)), _) => return below.next().expect("peeked").map(|_| ()),
            (Some(Ok(_)), None) => false,
            (None, Some(_)) => true,
            (Some(Ok((bk, _))), Some((ak, _))) => {
                if bk.as_slice() == ak.as_slice() {
                    below.next(); // shadowed by the overlay
                    true
                } else {
                    ak.as_slice() < bk.as_slice()
                }
            }
        };
        let go_on = if take_above {
            let (k, v) = above.next().expect("peeked");
            match v {
                Some(v) => visit(k, v)?,
                None => true,
            }
        } else {
            let (k, v) = below.next().expect("peeked")?;
            visit(&k, &v)?
        };
        if !go_on {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(items: &[(&str, Option<&str>)]) -> Rows {
        items
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn merge_prefers_the_overlay_and_hides_removed_rows() {
        let below = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"d".to_vec(), b"4".to_vec()),
        ];
        let above = rows(&[
            ("b", None),
            ("c", Some("3")),
            ("d", Some("5")),
            ("e", Some("6")),
        ]);
        let mut seen = Vec::new();
        merge(below.clone().into_iter().map(Ok), above.iter(), |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })
        .unwrap();
        let want: Vec<(Vec<u8>, Vec<u8>)> = [("a", "1"), ("c", "3"), ("d", "5"), ("e", "6")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(seen, want);
        // Stopping early stops.
        let mut n = 0;
        merge(below.into_iter().map(Ok), above.iter(), |_, _| {
            n += 1;
            Ok(n < 2)
        })
        .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn layers_merge_with_the_newest_winning() {
        let newest = rows(&[("b", Some("new")), ("d", None)]);
        let middle = rows(&[("a", Some("mid")), ("b", Some("mid")), ("e", Some("mid"))]);
        let oldest = rows(&[("b", Some("old")), ("c", Some("old")), ("d", Some("old"))]);
        let got: Vec<(String, Option<String>)> = Layered::new(vec![
            newest.range::<Vec<u8>, _>(..),
            middle.range::<Vec<u8>, _>(..),
            oldest.range::<Vec<u8>, _>(..),
        ])
        .map(|(k, v)| {
            (
                String::from_utf8(k.clone()).unwrap(),
                v.as_ref().map(|v| String::from_utf8(v.clone()).unwrap()),
            )
        })
        .collect();
        let want: Vec<(String, Option<String>)> = [
            ("a", Some("mid")),
            ("b", Some("new")),
            ("c", Some("old")),
            ("d", None),
            ("e", Some("mid")),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
        assert_eq!(got, want);
    }
}
