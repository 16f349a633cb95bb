//! What readers see of the metadata: the rows changed since the database's last commit (the
//! overlay, kept here in memory and in the metadata log, [`crate::store::wal`]) over a redb
//! read snapshot.
//!
//! The committer publishes each group's changes here once they are durable in the log, and
//! clears everything after a database commit has made them durable there. A reader holds the
//! overlay's read lock while it looks rows up and while it begins its snapshot, so a clear
//! (which waits for the write lock) can never fall between the two: a row missing from the
//! overlay is in the snapshot, or was never changed since.

use std::collections::BTreeMap;

use parking_lot::{RwLock, RwLockReadGuard};
use redb::ReadTransaction;

use crate::store::meta::{self, AppRef, Change, ContentMeta, ObjectInfo, Table, TABLES};
use crate::store::metadb::MetaDb;
use crate::store::{meta_err, ContentId, Error, Result};

/// Changed rows per table: the new value, or `None` for a removed row.
type Rows = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

#[derive(Default)]
pub(crate) struct Overlay {
    tables: RwLock<[Rows; TABLES]>,
}

impl Overlay {
    /// Makes durable changes visible to readers.
    pub fn publish(&self, changes: Vec<Change>) {
        let mut t = self.tables.write();
        for c in changes {
            t[c.table as usize].insert(c.key, c.value);
        }
    }

    /// Forgets every change (the database now holds them all).
    pub fn clear(&self) {
        let mut t = self.tables.write();
        for rows in t.iter_mut() {
            rows.clear();
        }
    }

    /// Every change held, in table order: what a new write transaction must re-apply.
    pub fn changes(&self) -> Vec<Change> {
        let t = self.tables.read();
        let mut out = Vec::new();
        for (i, rows) in t.iter().enumerate() {
            let table = Table::from_u8(i as u8).expect("table index");
            out.extend(rows.iter().map(|(k, v)| Change {
                table,
                key: k.clone(),
                value: v.clone(),
            }));
        }
        out
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.tables.read().iter().all(|r| r.is_empty())
    }

    /// A consistent view for point lookups and listings. Hold it briefly: the committer
    /// waits for it to publish.
    pub fn view<'a>(&'a self, db: &'a MetaDb) -> View<'a> {
        View {
            rows: self.tables.read(),
            db,
            txn: std::cell::OnceCell::new(),
        }
    }

    /// An owned view of the content table for long scans (compaction, scrub): a copy of its
    /// changed rows and a snapshot taken together.
    pub fn content_scan(&self, db: &MetaDb) -> Result<ContentScan> {
        let rows = self.tables.read();
        let txn = db.begin_read()?;
        Ok(ContentScan {
            rows: rows[Table::Content as usize].clone(),
            txn,
        })
    }
}

/// Overlay rows over a snapshot, under the overlay's read lock.
pub(crate) struct View<'a> {
    rows: RwLockReadGuard<'a, [Rows; TABLES]>,
    db: &'a MetaDb,
    txn: std::cell::OnceCell<ReadTransaction>,
}

impl View<'_> {
    fn txn(&self) -> Result<&ReadTransaction> {
        if let Some(t) = self.txn.get() {
            return Ok(t);
        }
        let t = self.db.begin_read()?;
        Ok(self.txn.get_or_init(|| t))
    }

    /// The row `key` of a table keyed and valued by bytes.
    fn get(
        &self,
        table: Table,
        def: redb::TableDefinition<&[u8], &[u8]>,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.rows[table as usize].get(key) {
            return Ok(v.clone());
        }
        let t = self.txn()?.open_table(def).map_err(meta_err)?;
        let v = t.get(key).map_err(meta_err)?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    pub fn content(&self, id: &ContentId) -> Result<Option<ContentMeta>> {
        self.get(Table::Content, meta::CONTENT, &id.0)?
            .map(|v| ContentMeta::decode(&v))
            .transpose()
    }

    pub fn app_ref(&self, app: &str, id: &ContentId) -> Result<Option<AppRef>> {
        self.get(Table::Refs, meta::REFS, &meta::ref_key(app, id))?
            .map(|v| AppRef::decode(&v))
            .transpose()
    }

    pub fn object(&self, app: &str, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        let k = meta::object_key(app, bucket, key);
        self.get(Table::Objects, meta::OBJECTS, &k)?
            .map(|v| ObjectInfo::decode(&v))
            .transpose()
    }

    pub fn quarantined(&self, id: &ContentId) -> Result<bool> {
        if let Some(v) = self.rows[Table::Quarantine as usize].get(id.0.as_slice()) {
            return Ok(v.is_some());
        }
        let t = self.txn()?.open_table(meta::QUARANTINE).map_err(meta_err)?;
        meta::is_quarantined(&t, id)
    }

    /// Visits the live object-table keys from `from` on, in byte order, until `visit` says
    /// stop.
    pub fn object_keys_from(
        &self,
        from: &[u8],
        mut visit: impl FnMut(&[u8]) -> bool,
    ) -> Result<()> {
        let t = self.txn()?.open_table(meta::OBJECTS).map_err(meta_err)?;
        let below = t.range(from..).map_err(meta_err)?.map(|item| {
            item.map(|(k, _)| (k.value().to_vec(), Vec::new()))
                .map_err(meta_err)
        });
        let above = self.rows[Table::Objects as usize].range(from.to_vec()..);
        merge(below, above, |k, _| Ok(visit(k)))
    }

    /// Up to `limit` keys of `bucket` in byte order, after `after`.
    pub fn list_keys(
        &self,
        app: &str,
        bucket: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        meta::list_keys(
            &|from, visit| self.object_keys_from(from, visit),
            app,
            bucket,
            after,
            limit,
        )
    }

    /// Up to `limit` of the app's buckets holding at least one key, after `after`.
    pub fn list_buckets(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        meta::list_buckets(
            &|from, visit| self.object_keys_from(from, visit),
            app,
            after,
            limit,
        )
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

    #[test]
    fn merge_prefers_the_overlay_and_hides_removed_rows() {
        let below = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
            (b"d".to_vec(), b"4".to_vec()),
        ];
        let mut above: Rows = BTreeMap::new();
        above.insert(b"b".to_vec(), None);
        above.insert(b"c".to_vec(), Some(b"3".to_vec()));
        above.insert(b"d".to_vec(), Some(b"5".to_vec()));
        above.insert(b"e".to_vec(), Some(b"6".to_vec()));
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
}
