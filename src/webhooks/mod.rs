//! Webhooks: namespaced subscriptions (`berth.io/v1` Webhook objects) to what happens to image
//! streams and manifests, delivered durably, in order, signed.
//!
//! - [`types`]: the Webhook object, event types and filters.
//! - [`subscriptions`]: the API operations and the subscription records.
//! - [`outbox`]: events queued per subscription in the transaction of the change they
//!   describe (the [`crate::imagestream::notice::NoticeSink`] the registry writes through).
//! - [`delivery`]: the worker that sends each subscription's outbox, in order, at least once.
//! - [`format`] (CloudEvents, Distribution's envelope), [`signing`] (Standard Webhooks),
//!   [`target`] (which addresses deliveries may reach).
//!
//! Like the importer, this module speaks HTTP outward (its own client and wire formats); it
//! never sees an incoming request.

pub mod delivery;
pub mod format;
pub mod outbox;
pub mod signing;
pub mod subscriptions;
pub mod target;
pub mod types;

pub use subscriptions::Webhooks;
pub use types::Webhook;
