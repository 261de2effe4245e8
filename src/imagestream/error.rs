/// A field-level problem in an Invalid error (Kubernetes `details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotFound`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: &str, why: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {value:?}: {why}"),
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        }
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        Cause {
            reason: "FieldValueNotFound",
            field: field.into(),
            message: format!("Not found: {value:?}"),
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
    #[error("{kind}.image.openshift.io {name:?} is invalid: {}", causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join(", "))]
    Invalid {
        kind: &'static str,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
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
