//! berth-storage: where berth keeps bytes. It knows nothing of HTTP or image streams.
//!
//! # Layout
//! - [`digest`]: the `Digest` newtype (`sha256:<hex>` / `sha512:<hex>`) and streaming hashers.
//! - [`metadata`]: the [`MetadataStore`] trait: an ordered key/value space with serializable
//!   transactions; [`record`] gives every stored value a format version.
//! - [`blob`]: the [`BlobStore`] trait: content-addressed blobs and resumable uploads.
//! - [`sled_store`] / [`memory`]: the embedded metadata backends; `etcd` (feature `etcd`, on by
//!   default): the shared one for several replicas; [`fs`]: the filesystem blob store.
//! - [`election`]: one holder at a time of a named lease (background work on one replica).
//! - [`testsuite`]: one behavioural suite every backend must pass; `etcd_cluster`: real etcd
//!   members for tests.

pub mod blob;
pub mod digest;
pub mod election;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod etcd_cluster;
pub mod fs;
pub mod memory;
pub mod metadata;
pub mod record;
pub mod resumable;
pub mod s3;
pub mod sled_store;
pub mod space;
pub mod testsuite;

pub use blob::{BlobStore, ByteStream, StoredBlob, UploadId};
pub use digest::{Algorithm, Digest, DigestError};
pub use error::{Error, Result};
pub use metadata::{MetadataStore, MetadataStoreExt, TxError, Txn};
pub use record::Record;
