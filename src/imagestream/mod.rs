//! The image-stream domain (OpenShift's image.openshift.io/v1): ImageStream, Image,
//! ImageStreamTag, ImageStreamImage, ImageStreamMapping. Tag history rules live in
//! [`history`]; every stream write goes through [`store::save_stream`], which keeps the
//! registry's tag index and content links in the same transaction.

pub mod changelog;
pub mod error;
pub mod events;
pub mod history;
pub mod image;
pub mod import;
pub mod labels;
pub mod mapping;
pub mod notice;
pub mod prune;
pub mod reach;
pub mod retention;
pub mod service;
pub mod spec_tags;
pub mod store;
pub mod tag_order;
pub mod types;

pub use error::{Cause, CauseKind, Error, Result};
pub use notice::{Notice, Origin};
pub use reach::Reach;
pub use store::{Change, ChangeKind};
