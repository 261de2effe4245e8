//! Access control: identities (users, service accounts, tokens), the Docker token flow's
//! signed registry tokens, and the one rule set both APIs are authorized by.

pub mod jwt;
pub mod policy;
pub mod service;
pub mod throttle;

pub use policy::{allowed, Action, ClusterRole, Role};
pub use service::{Auth, AuthError, Identity};
pub use throttle::LoginLimits;
