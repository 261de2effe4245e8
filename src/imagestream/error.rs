/// A field-level problem in an Invalid error (Kubernetes `details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub kind: CauseKind,
    pub field: String,
    pub value: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseKind {
    Invalid,
    Required,
    NotFound,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, why: &str) -> Self {
        Cause {
            kind: CauseKind::Invalid,
            field: field.into(),
            value: value.to_string(),
            detail: why.to_string(),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Cause {
            kind: CauseKind::Required,
            field: field.into(),
            value: String::new(),
            detail: String::new(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        Cause {
            kind: CauseKind::NotFound,
            field: field.into(),
            value: value.to_string(),
            detail: String::new(),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            CauseKind::Invalid => write!(
                f,
                "{}: Invalid value: {:?}: {}",
                self.field, self.value, self.detail
            ),
            CauseKind::Required => write!(f, "{}: Required value", self.field),
            CauseKind::NotFound => write!(f, "{}: Not found: {:?}", self.field, self.value),
        }
    }
}

/// Image-stream API failures; the http layer renders each as a Kubernetes Status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{resource}.image.openshift.io {name:?} not found")]
    NotFound {
        resource: &'static str,
        name: String,
    },
    #[error("{resource}.image.openshift.io {name:?} already exists")]
    AlreadyExists {
        resource: &'static str,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {resource}.image.openshift.io {name:?}: {message}")]
    Conflict {
        resource: &'static str,
        name: String,
        message: String,
    },
    #[error("{kind}.image.openshift.io {name:?} is invalid: {}", causes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "))]
    Invalid {
        kind: &'static str,
        name: String,
        causes: Vec<Cause>,
    },
    /// The caller may not do this, by role or by policy; the message is the whole message
    /// and names only what the caller sent.
    #[error("{message}")]
    Forbidden {
        resource: &'static str,
        name: String,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    /// A whole-stream write found the stream changed since it was read; the caller re-reads
    /// and tries again (it only escapes after repeated losses).
    #[error("the image stream kept changing while it was being written; try again")]
    Retry,
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

pub type Result<T, E = Error> = std::result::Result<T, E>;
