//! Metadata in `redb` (ACID, copy-on-write B-trees, crash-safe): which content exists and where,
//! which app holds which content (and how: stored directly and/or named by keys), each app's
//! usage, and named objects. Only the committer decides changes ([`Tx`]); they reach redb
//! through the metadata log and the overlay ([`crate::store::wal`], [`crate::store::overlay`]).

use redb::TableDefinition;

use crate::store::overlay::{Layer, View};

use crate::store::codec::{Dec, Enc};
use crate::store::{ContentId, Error, Result};

/// content id -> [`ContentMeta`].
pub(crate) const CONTENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("content");
/// (app, content id) -> [`AppRef`].
pub(crate) const REFS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("refs");
/// app -> bytes of distinct content it references.
pub(crate) const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
/// (app, bucket, key) -> [`ObjectInfo`].
pub(crate) const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("objects");

/// content id -> when (ms since the epoch) a scrub found its stored bytes corrupt. Reads of
/// quarantined content fail; storing the same bytes again repairs it.
pub(crate) const QUARANTINE: TableDefinition<&[u8], u64> = TableDefinition::new("quarantine");
/// Bookkeeping of the store itself: `wal_gen`, the generation of the metadata log that holds
/// the changes made after this database's last commit (see [`crate::store::wal`]).
pub(crate) const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");

/// The tables a change can touch, numbered as the metadata log and the overlay name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    Content = 0,
    Refs = 1,
    Usage = 2,
    Objects = 3,
    Quarantine = 4,
}

/// How many [`Table`]s there are.
pub(crate) const TABLES: usize = 5;

impl Table {
    pub fn from_u8(v: u8) -> Option<Table> {
        Some(match v {
            0 => Table::Content,
            1 => Table::Refs,
            2 => Table::Usage,
            3 => Table::Objects,
            4 => Table::Quarantine,
            _ => return None,
        })
    }
}

/// One row change as the metadata log records it and the overlay serves it: the row's new
/// value (the u64 of `usage` and `quarantine` as 8 little-endian bytes, the `usage` key as
/// its UTF-8 bytes), or `None` for a removed row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Change {
    pub table: Table,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Reading rows as [`Change`] encodes them, with typed lookups on top: implemented by the
/// readers' [`View`] and by the committer's [`Tx`] (which sees its own pending changes).
pub(crate) trait ReadRows {
    /// Row `key` of `table`, if it exists.
    fn row(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>>;

    fn content(&self, id: &ContentId) -> Result<Option<ContentMeta>> {
        self.row(Table::Content, &id.0)?
            .map(|v| ContentMeta::decode(&v))
            .transpose()
    }

    fn app_ref(&self, app: &str, id: &ContentId) -> Result<Option<AppRef>> {
        self.row(Table::Refs, &ref_key(app, id))?
            .map(|v| AppRef::decode(&v))
            .transpose()
    }

    fn object(&self, app: &str, bucket: &str, key: &str) -> Result<Option<ObjectInfo>> {
        self.row(Table::Objects, &object_key(app, bucket, key))?
            .map(|v| ObjectInfo::decode(&v))
            .transpose()
    }

    fn quarantined(&self, id: &ContentId) -> Result<bool> {
        Ok(self.row(Table::Quarantine, &id.0)?.is_some())
    }
}

/// Version byte in front of every encoded value.
const VALUE_VERSION: u8 = 1;

/// Where content lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// A record in volume `number` at byte `offset`.
    Volume { number: u32, offset: u64 },
    /// Its own content file, named by the id.
    File,
    /// An object of the S3-compatible backend, `<prefix>data/<nonce as 16 hex digits>`, in
    /// the content-file format with chunks of `chunk_size` bytes (kept here so a range read
    /// needs no extra request for the header).
    Remote { nonce: u64, chunk_size: u32 },
}

/// One piece of stored content, shared by every app that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContentMeta {
    pub size: u64,
    /// Number of apps holding a reference.
    pub refcount: u64,
    pub location: Location,
}

impl ContentMeta {
    pub fn encode(&self) -> Vec<u8> {
        let e = Enc::default()
            .u8(VALUE_VERSION)
            .u64(self.size)
            .u64(self.refcount);
        match self.location {
            Location::Volume { number, offset } => e.u8(1).u32(number).u64(offset).0,
            Location::File => e.u8(2).0,
            Location::Remote { nonce, chunk_size } => e.u8(3).u64(nonce).u32(chunk_size).0,
        }
    }

    pub fn decode(v: &[u8]) -> Result<Self> {
        let mut d = Dec(v);
        check_version(d.u8()?)?;
        let size = d.u64()?;
        let refcount = d.u64()?;
        let location = match d.u8()? {
            1 => Location::Volume {
                number: d.u32()?,
                offset: d.u64()?,
            },
            2 => Location::File,
            3 => Location::Remote {
                nonce: d.u64()?,
                chunk_size: d.u32()?,
            },
            t => return Err(Error::Corrupt(format!("unknown location tag {t}"))),
        };
        Ok(ContentMeta {
            size,
            refcount,
            location,
        })
    }
}

/// How one app holds one piece of content.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AppRef {
    /// Stored through the content-addressed API (`write`), until `delete_blob`.
    pub direct: bool,
    /// Number of the app's named objects pointing at it.
    pub keys: u64,
}

impl AppRef {
    fn encode(&self) -> Vec<u8> {
        Enc::default()
            .u8(VALUE_VERSION)
            .u8(self.direct as u8)
            .u64(self.keys)
            .0
    }

    pub(crate) fn decode(v: &[u8]) -> Result<Self> {
        let mut d = Dec(v);
        check_version(d.u8()?)?;
        Ok(AppRef {
            direct: d.u8()? != 0,
            keys: d.u64()?,
        })
    }
}

/// The u64 of a `usage` or `quarantine` row, as [`Change`] carries it.
pub(crate) fn u64_value(v: &[u8]) -> Result<u64> {
    v.try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| Error::Corrupt("a u64 row value is not 8 bytes".into()))
}

fn check_version(v: u8) -> Result<()> {
    if v == VALUE_VERSION {
        Ok(())
    } else {
        Err(Error::Format(format!("metadata value version {v}")))
    }
}

/// A named object: what `GET /buckets/B/keys/K` answers besides the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The content it points at.
    pub id: ContentId,
    /// Size in bytes.
    pub size: u64,
    /// The Content-Type given when it was stored.
    pub content_type: String,
    /// User metadata (`X-Riak-Meta-*`), in the order given.
    pub user_meta: Vec<(String, String)>,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub last_modified_ms: u64,
}

impl ObjectInfo {
    /// The entity tag: the content digest in hex, quoted, so equal bytes have equal tags.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.id.hex())
    }

    fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default()
            .u8(VALUE_VERSION)
            .raw(&self.id.0)
            .u64(self.size)
            .u64(self.last_modified_ms)
            .bytes(self.content_type.as_bytes())
            .u32(self.user_meta.len() as u32);
        for (k, v) in &self.user_meta {
            e = e.bytes(k.as_bytes()).bytes(v.as_bytes());
        }
        e.0
    }

    pub(crate) fn decode(v: &[u8]) -> Result<Self> {
        let mut d = Dec(v);
        check_version(d.u8()?)?;
        let id = ContentId(d.id()?);
        let size = d.u64()?;
        let last_modified_ms = d.u64()?;
        let content_type = d.string()?;
        let n = d.u32()?;
        let mut user_meta = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            user_meta.push((d.string()?, d.string()?));
        }
        Ok(ObjectInfo {
            id,
            size,
            content_type,
            user_meta,
            last_modified_ms,
        })
    }
}

pub(crate) fn ref_key(app: &str, id: &ContentId) -> Vec<u8> {
    Enc::default().bytes(app.as_bytes()).raw(&id.0).0
}

/// Prefix shared by every `refs` and `objects` key of one app.
pub(crate) fn app_prefix(app: &str) -> Vec<u8> {
    Enc::default().bytes(app.as_bytes()).0
}

/// Prefix shared by all keys of one bucket, so listing is a range scan.
pub(crate) fn bucket_prefix(app: &str, bucket: &str) -> Vec<u8> {
    Enc::default()
        .bytes(app.as_bytes())
        .bytes(bucket.as_bytes())
        .0
}

pub(crate) fn object_key(app: &str, bucket: &str, key: &str) -> Vec<u8> {
    let mut k = bucket_prefix(app, bucket);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Keys of a bucket in byte order, starting after `after`, at most `limit`.
pub(crate) fn list_keys(
    view: &View<'_>,
    app: &str,
    bucket: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let prefix = bucket_prefix(app, bucket);
    let start = match after {
        Some(a) => {
            let mut k = object_key(app, bucket, a);
            k.push(0); // the smallest key greater than `a`
            k
        }
        None => prefix.clone(),
    };
    let mut out = Vec::new();
    let mut bad = false;
    view.object_keys_from(&start, |k| {
        if !k.starts_with(&prefix) || out.len() >= limit {
            return false;
        }
        match std::str::from_utf8(&k[prefix.len()..]) {
            Ok(name) => out.push(name.to_string()),
            Err(_) => bad = true,
        }
        !bad
    })?;
    if bad {
        return Err(Error::Corrupt("object key is not UTF-8".into()));
    }
    Ok(out)
}

/// Names of the app's buckets that hold at least one object, in byte order, after `after`,
/// at most `limit`. Skips from one bucket to the next without reading its keys.
pub(crate) fn list_buckets(
    view: &View<'_>,
    app: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>> {
    let app_prefix = Enc::default().bytes(app.as_bytes()).0;
    let mut start = match after {
        Some(b) => prefix_successor(&bucket_prefix(app, b)),
        None => Some(app_prefix.clone()),
    };
    let mut out = Vec::new();
    while let Some(from) = start.take() {
        if out.len() >= limit {
            break;
        }
        let mut first = None;
        view.object_keys_from(&from, |k| {
            first = Some(k.to_vec());
            false
        })?;
        let Some(k) = first else { break };
        if !k.starts_with(&app_prefix) {
            break;
        }
        let mut dec = Dec(&k[app_prefix.len()..]);
        let bucket = dec.string()?;
        start = prefix_successor(&bucket_prefix(app, &bucket));
        out.push(bucket);
    }
    Ok(out)
}

/// The smallest byte string greater than every string that starts with `prefix`.
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut p = prefix.to_vec();
    while let Some(last) = p.pop() {
        if last < u8::MAX {
            p.push(last + 1);
            return Some(p);
        }
    }
    None
}

/// How an app takes or drops a hold on content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    Direct,
    Key,
}

/// Writes rows into redb, in the tables' key order: a frozen overlay layer (the
/// checkpointer) or the metadata log's records (replay at open).
pub(crate) fn write_rows<'r>(
    txn: &redb::WriteTransaction,
    rows: impl IntoIterator<Item = (Table, &'r [u8], Option<&'r [u8]>)>,
) -> Result<()> {
    use crate::store::meta_err as e;
    let mut content = txn.open_table(CONTENT).map_err(e)?;
    let mut refs = txn.open_table(REFS).map_err(e)?;
    let mut usage = txn.open_table(USAGE).map_err(e)?;
    let mut objects = txn.open_table(OBJECTS).map_err(e)?;
    let mut quarantine = txn.open_table(QUARANTINE).map_err(e)?;
    for (table, k, v) in rows {
        match (table, v) {
            (Table::Content, Some(v)) => drop(content.insert(k, v).map_err(e)?),
            (Table::Content, None) => drop(content.remove(k).map_err(e)?),
            (Table::Refs, Some(v)) => drop(refs.insert(k, v).map_err(e)?),
            (Table::Refs, None) => drop(refs.remove(k).map_err(e)?),
            (Table::Objects, Some(v)) => drop(objects.insert(k, v).map_err(e)?),
            (Table::Objects, None) => drop(objects.remove(k).map_err(e)?),
            (Table::Usage, v) => {
                let app = std::str::from_utf8(k)
                    .map_err(|_| Error::Corrupt("usage key is not UTF-8".into()))?;
                match v {
                    Some(v) => drop(usage.insert(app, u64_value(v)?).map_err(e)?),
                    None => drop(usage.remove(app).map_err(e)?),
                }
            }
            (Table::Quarantine, Some(v)) => drop(quarantine.insert(k, u64_value(v)?).map_err(e)?),
            (Table::Quarantine, None) => drop(quarantine.remove(k).map_err(e)?),
        }
    }
    Ok(())
}

impl ReadRows for Tx<'_> {
    fn row(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending[table as usize].get(key) {
            Some(v) => Ok(v.clone()),
            None => self.view.row(table, key),
        }
    }
}

/// What releasing a hold did.
pub(crate) struct Released {
    /// Bytes taken off the app's usage (its last hold on that content went).
    pub freed: u64,
    /// The content's last reference went: its row is gone and its bytes may be reclaimed.
    pub garbage: Option<ContentMeta>,
}

/// The committer's side of one batch: reads see the batch's own changes (`pending`, the last
/// value of each row it touched) over the overlay over the database ([`View`]); they go to the
/// metadata log and become visible to others only when the committer publishes them.
pub(crate) struct Tx<'v> {
    view: &'v View<'v>,
    pending: Layer,
}

impl<'v> Tx<'v> {
    pub fn new(view: &'v View<'v>) -> Tx<'v> {
        Tx {
            view,
            pending: Default::default(),
        }
    }

    /// The batch's changes: the last value of every row it touched.
    pub fn into_changes(self) -> Vec<Change> {
        let mut out = Vec::new();
        for (i, rows) in self.pending.into_iter().enumerate() {
            let table = Table::from_u8(i as u8).expect("table index");
            out.extend(
                rows.into_iter()
                    .map(|(key, value)| Change { table, key, value }),
            );
        }
        out
    }

    /// Records a change: `Some` writes the row, `None` removes it.
    fn change(&mut self, table: Table, key: &[u8], value: Option<Vec<u8>>) {
        self.pending[table as usize].insert(key.to_vec(), value);
    }

    fn usage(&self, app: &str) -> Result<u64> {
        self.row(Table::Usage, app.as_bytes())?
            .map_or(Ok(0), |v| u64_value(&v))
    }

    pub fn set_content(&mut self, id: &ContentId, c: &ContentMeta) {
        self.change(Table::Content, &id.0, Some(c.encode()))
    }

    pub fn set_quarantine(&mut self, id: &ContentId, since_ms: u64) {
        let v = since_ms.to_le_bytes().to_vec();
        self.change(Table::Quarantine, &id.0, Some(v))
    }

    pub fn remove_quarantine(&mut self, id: &ContentId) -> Result<()> {
        if self.quarantined(id)? {
            self.change(Table::Quarantine, &id.0, None);
        }
        Ok(())
    }

    fn add_usage(&mut self, app: &str, delta: i128) -> Result<()> {
        let new = (self.usage(app)? as i128 + delta).max(0) as u64;
        let value = (new != 0).then(|| new.to_le_bytes().to_vec());
        self.change(Table::Usage, app.as_bytes(), value);
        Ok(())
    }

    /// Takes a hold for `app` on `id`. `new` is the content to record if it is not stored yet.
    /// Returns the bytes charged to the app (its size if the app did not hold it before).
    pub fn add_hold(
        &mut self,
        app: &str,
        id: &ContentId,
        hold: Hold,
        new: Option<ContentMeta>,
    ) -> Result<u64> {
        let mut content = match self.content(id)? {
            Some(c) => c,
            None => new.ok_or_else(|| Error::Corrupt("content vanished before commit".into()))?,
        };
        let mut r = self.app_ref(app, id)?;
        let mut charged = 0;
        if r.is_none() {
            content.refcount += 1;
            charged = content.size;
            self.add_usage(app, content.size as i128)?;
            r = Some(AppRef::default());
        }
        let mut r = r.expect("set above");
        match hold {
            Hold::Direct => r.direct = true,
            Hold::Key => r.keys += 1,
        }
        self.set_content(id, &content);
        self.change(Table::Refs, &ref_key(app, id), Some(r.encode()));
        Ok(charged)
    }

    /// Drops one hold; `NotFound` if the app has no such hold.
    pub fn release_hold(&mut self, app: &str, id: &ContentId, hold: Hold) -> Result<Released> {
        let mut r = self.app_ref(app, id)?.ok_or(Error::NotFound)?;
        match hold {
            Hold::Direct if r.direct => r.direct = false,
            Hold::Key if r.keys > 0 => r.keys -= 1,
            _ => return Err(Error::NotFound),
        }
        let rk = ref_key(app, id);
        if r.direct || r.keys > 0 {
            self.change(Table::Refs, &rk, Some(r.encode()));
            return Ok(Released {
                freed: 0,
                garbage: None,
            });
        }
        self.change(Table::Refs, &rk, None);
        let mut content = self
            .content(id)?
            .ok_or_else(|| Error::Corrupt(format!("{id} referenced but not stored")))?;
        self.add_usage(app, -(content.size as i128))?;
        content.refcount = content.refcount.saturating_sub(1);
        let garbage = if content.refcount == 0 {
            self.change(Table::Content, &id.0, None);
            self.remove_quarantine(id)?;
            Some(content)
        } else {
            self.set_content(id, &content);
            None
        };
        Ok(Released {
            freed: content.size,
            garbage,
        })
    }

    /// Up to `limit` live rows of `table` whose keys start with `prefix`, in key order.
    fn prefixed(
        &self,
        table: Table,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        self.view.rows_from(
            table,
            prefix,
            Some(&self.pending[table as usize]),
            |k, v| {
                if out.len() >= limit || !k.starts_with(prefix) {
                    return Ok(false);
                }
                out.push((k.to_vec(), v.to_vec()));
                Ok(true)
            },
        )?;
        Ok(out)
    }

    /// Up to `limit` named objects of `app` (any bucket), in key order: (table key, object).
    pub fn app_objects(&self, app: &str, limit: usize) -> Result<Vec<(Vec<u8>, ObjectInfo)>> {
        self.prefixed(Table::Objects, &app_prefix(app), limit)?
            .into_iter()
            .map(|(k, v)| Ok((k, ObjectInfo::decode(&v)?)))
            .collect()
    }

    /// Up to `limit` content ids `app` holds, in key order, with how it holds them.
    pub fn app_refs(&self, app: &str, limit: usize) -> Result<Vec<(ContentId, AppRef)>> {
        let prefix = app_prefix(app);
        self.prefixed(Table::Refs, &prefix, limit)?
            .into_iter()
            .map(|(k, v)| {
                let id: [u8; 32] = k[prefix.len()..]
                    .try_into()
                    .map_err(|_| Error::Corrupt("ref key is not app + 32 bytes".into()))?;
                Ok((ContentId(id), AppRef::decode(&v)?))
            })
            .collect()
    }

    /// Removes the named object stored under table key `key` (from [`Tx::app_objects`]).
    pub fn remove_object_key(&mut self, key: &[u8]) {
        self.change(Table::Objects, key, None)
    }

    /// Drops every hold `app` has on `id` at once (purge): like releasing the last one.
    pub fn drop_ref(&mut self, app: &str, id: &ContentId) -> Result<Released> {
        let Some(mut r) = self.app_ref(app, id)? else {
            return Ok(Released {
                freed: 0,
                garbage: None,
            });
        };
        // Leave exactly one hold, then release it through the usual path.
        if r.direct {
            r.keys = 0;
        } else {
            r.keys = 1;
        }
        self.change(Table::Refs, &ref_key(app, id), Some(r.encode()));
        let hold = if r.direct { Hold::Direct } else { Hold::Key };
        self.release_hold(app, id, hold)
    }

    /// Removes `app`'s usage row; returns what it said (0 when there was none).
    pub fn clear_usage(&mut self, app: &str) -> Result<u64> {
        let cur = self.usage(app)?;
        if cur != 0 {
            self.change(Table::Usage, app.as_bytes(), None);
        }
        Ok(cur)
    }

    /// Stores the named object; returns the one it replaced.
    pub fn put_object(
        &mut self,
        app: &str,
        bucket: &str,
        key: &str,
        info: &ObjectInfo,
    ) -> Result<Option<ObjectInfo>> {
        let old = self.object(app, bucket, key)?;
        self.change(
            Table::Objects,
            &object_key(app, bucket, key),
            Some(info.encode()),
        );
        Ok(old)
    }

    /// Removes the named object; returns it.
    pub fn delete_object(
        &mut self,
        app: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectInfo>> {
        let old = self.object(app, bucket, key)?;
        if old.is_some() {
            self.change(Table::Objects, &object_key(app, bucket, key), None);
        }
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for location in [
            Location::File,
            Location::Volume {
                number: 3,
                offset: 99,
            },
            Location::Remote {
                nonce: u64::MAX - 1,
                chunk_size: 1 << 18,
            },
        ] {
            let c = ContentMeta {
                size: 12,
                refcount: 2,
                location,
            };
            assert_eq!(ContentMeta::decode(&c.encode()).unwrap(), c);
        }
        let r = AppRef {
            direct: true,
            keys: 5,
        };
        assert_eq!(AppRef::decode(&r.encode()).unwrap(), r);
        let o = ObjectInfo {
            id: ContentId([7; 32]),
            size: 3,
            content_type: "text/plain".into(),
            user_meta: vec![("a".into(), "b".into()), ("c".into(), String::new())],
            last_modified_ms: 1_700_000_000_000,
        };
        assert_eq!(ObjectInfo::decode(&o.encode()).unwrap(), o);
        assert!(matches!(
            ContentMeta::decode(&[9, 0]),
            Err(Error::Format(_))
        ));
    }

    #[test]
    fn object_keys_do_not_collide_across_buckets() {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(object_key("x", "ab", "c"), object_key("x", "a", "bc"));
        assert!(object_key("x", "b", "k").starts_with(&bucket_prefix("x", "b")));
        assert!(!object_key("x", "bb", "k").starts_with(&bucket_prefix("x", "b")));
    }
}
