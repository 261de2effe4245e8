use crate::digest::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the storage layer can report. Callers above treat all but the upload and
/// digest variants as internal faults.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata backend error: {0}")]
    Backend(String),
    #[error("stored {kind} record has format version {found}; this build reads versions up to {supported}")]
    UnsupportedVersion {
        kind: &'static str,
        found: u8,
        supported: u8,
    },
    #[error("stored {kind} record is corrupt: {reason}")]
    Corrupt { kind: &'static str, reason: String },
    #[error("upload session not found")]
    UploadUnknown,
    #[error("upload has {current} bytes; a chunk must start there")]
    RangeMismatch { current: u64 },
    #[error("content hashes to {computed}, not to the digest given")]
    DigestMismatch { computed: Digest },
    /// A transaction lost a race and should be retried; backends retry internally, so this only
    /// escapes when a backend gives up.
    #[error("transaction conflict")]
    Conflict,
    /// A write refused before it started because the data directory is short of space.
    #[error(
        "the data directory has {available} bytes free, less than the {reserve} bytes kept in \
         reserve (min_free_bytes)"
    )]
    NoSpace { available: u64, reserve: u64 },
    /// A transaction larger than the metadata store accepts (etcd's operation and request-size
    /// limits); nothing was written.
    #[error("too large for the metadata store: {0}")]
    TooLarge(String),
    /// The blob store or a shared metadata store (object storage, etcd) could not be reached
    /// or refused the request. A write that reports it may or may not have happened.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl Error {
    /// Whether the write failed for want of space: refused by a reserve check, or the
    /// filesystem's own ENOSPC or EDQUOT (also when a backend wrapped it).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::NoSpace { .. } => true,
            Error::Io(e) => crate::space::is_disk_full(e),
            _ => false,
        }
    }
}
