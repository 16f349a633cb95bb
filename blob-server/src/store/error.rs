//! The storage engine's error type. "Not yours" and "absent" are one variant on purpose: an app
//! must not learn whether another app holds some content.

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id, object or key does not exist for this app (or belongs only to other apps).
    #[error("not found")]
    NotFound,
    /// Storing would take the app past its byte quota; nothing was stored.
    #[error("quota exceeded: the app may store {limit} bytes")]
    QuotaExceeded {
        /// The app's quota in bytes.
        limit: u64,
    },
    /// The object is larger than the configured maximum object size.
    #[error("object larger than the limit of {limit} bytes")]
    TooLarge {
        /// The maximum object size in bytes.
        limit: u64,
    },
    /// A content id that is not `sha256:<64 lowercase hex>`.
    #[error("invalid content id")]
    InvalidId,
    /// An app, bucket or key name the store cannot hold (empty or over 1024 bytes).
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// A range outside the object.
    #[error("range {start}..{end} is outside an object of {size} bytes")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The object's size.
        size: u64,
    },
    /// Stored bytes failed their checksum: the store answers an error, never wrong bytes.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The data directory was written by an unknown format version, or is not a blob store.
    #[error("unsupported data directory: {0}")]
    Format(String),
    /// A [`crate::store::StoreConfig`] value out of range.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// An operating-system I/O error (disk full included).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The embedded metadata database failed.
    #[error("metadata store error: {0}")]
    Meta(#[source] Box<redb::Error>),
    /// The batch this change was committed with could not be made durable; nothing of it
    /// was acknowledged (for example the disk is full).
    #[error("commit failed: {0}")]
    Commit(String),
    /// A conditional write or delete found the object in another state (HTTP 412).
    #[error("precondition failed")]
    PreconditionFailed,
    /// The disk (or the file system's quota) is full: nothing of the change was kept.
    #[error("no space left on the storage device")]
    DiskFull,
    /// The storage backend (the S3-compatible bucket) failed or could not be reached;
    /// nothing of the change was kept.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
}

impl Error {
    /// Whether this error means the disk is full (`ENOSPC`, `EDQUOT`, `EFBIG`), directly or
    /// inside the metadata store.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::DiskFull => true,
            Error::Io(e) => io_is_disk_full(e),
            Error::Meta(e) => match e.as_ref() {
                redb::Error::Io(e) => io_is_disk_full(e),
                _ => false,
            },
            _ => false,
        }
    }

    /// What a writer whose batch could not commit is told: `DiskFull` when that was the
    /// cause, so clients get a 507 rather than a 500.
    pub(crate) fn commit_failed(cause: &Error) -> Error {
        if cause.is_disk_full() {
            Error::DiskFull
        } else {
            Error::Commit(cause.to_string())
        }
    }
}

fn io_is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG)
    ) || e.kind() == std::io::ErrorKind::StorageFull
}

/// Converts any redb error into [`Error::Meta`].
pub(crate) fn meta<E: Into<redb::Error>>(e: E) -> Error {
    Error::Meta(Box::new(e.into()))
}

/// Shorthand for results of the storage engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
