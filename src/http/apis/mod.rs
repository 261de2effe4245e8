//! The Kubernetes-style API: discovery (`/version`, `/api`, `/apis`) and
//! `/apis/image.openshift.io/v1`, independent of the image-stream domain.
//!
//! - [`path`]: `(method, path, query)` → [`path::ApiEndpoint`] with validated names and list options
//! - [`status`]: Kubernetes `Status` errors and success bodies
//! - [`discovery`]: the discovery documents
//! - [`watch`] / [`hub`]: streaming watch bodies and the event fan-out they read from
//! - [`patch`]: merge patch and JSON patch
//! - [`selector`]: label and field selectors; [`resource`]: the served resources' names

pub mod discovery;
pub mod hub;
pub mod openapi;
pub mod openapi_pb;
pub mod patch;
pub mod path;
pub mod resource;
pub mod selector;
pub mod status;
pub mod table;
pub mod watch;
