use berth_storage::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a registry operation. The http layer maps each to an OCI error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to this repository")]
    BlobUnknown,
    #[error("upload session unknown to this repository")]
    UploadUnknown,
    #[error("{0}")]
    UploadInvalid(String),
    #[error(
        "chunk out of order: the upload holds {current} bytes, the next chunk must start there"
    )]
    RangeInvalid { current: u64 },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("manifest unknown to this repository")]
    ManifestUnknown,
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references {0}, which this repository does not hold")]
    ManifestBlobUnknown(Digest),
    #[error("repository {0} is not known")]
    NameUnknown(String),
    #[error("{0}")]
    TooLarge(String),
    /// A limit on open upload sessions was reached.
    #[error("{0}")]
    TooManyUploads(String),
    /// Pull-through could not get a blob from the registry an image was imported from.
    #[error("{message}")]
    Upstream {
        too_many_requests: bool,
        message: String,
    },
    /// The image stream kept changing while a write that reads it whole was retried.
    #[error("the image stream kept changing; try again")]
    StreamChanged,
    #[error("storage failure: {0}")]
    Storage(#[from] berth_storage::Error),
}

impl From<berth_storage::TxError<Error>> for Error {
    fn from(e: berth_storage::TxError<Error>) -> Self {
        match e {
            berth_storage::TxError::Abort(e) => e,
            berth_storage::TxError::Storage(e) => Error::Storage(e),
        }
    }
}
