//! Retention policies: pruning that runs itself.
//!
//! A policy covers the streams of the namespaces it names (or matches) and says which history
//! to keep: revisions per tag, entries younger than an age, tags matching patterns (never
//! touched), and tags not pushed for a while (deleted). Policies come from the server config
//! and from the API (`/admin/v1/retention`, stored here); the server applies them all on a
//! schedule, each through the same code as `berth adm prune images`, so what they delete then
//! goes to garbage collection like anything else. A policy in dry-run mode logs what it would
//! delete and changes nothing. With no policy nothing runs.

use std::time::Duration;

use berth_storage::record::{decode, encode};
use berth_storage::{MetadataStore, MetadataStoreExt, Record, TxError};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::prune::{PruneOptions, PruneReport, TagRules};
use super::service::ImageStreams;

/// One policy, as TOML (`[[retention]]`, snake_case) or API JSON (camelCase) gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionPolicy {
    pub name: String,
    /// A namespace, or a pattern where `*` matches any run of characters.
    pub namespaces: String,
    #[serde(
        default,
        alias = "keep_tag_revisions",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_tag_revisions: Option<usize>,
    /// A duration (`7d`, `12h`, `90m`).
    #[serde(
        default,
        alias = "keep_younger_than",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_younger_than: Option<String>,
    /// Tags never touched (patterns as for `namespaces`).
    #[serde(default, alias = "keep_tags", skip_serializing_if = "Vec::is_empty")]
    pub keep_tags: Vec<String>,
    /// Tags whose current image is older than this are deleted (a duration).
    #[serde(
        default,
        alias = "delete_tags_not_pushed_for",
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_tags_not_pushed_for: Option<String>,
    /// Log what would be deleted; change nothing.
    #[serde(default, alias = "dry_run")]
    pub dry_run: bool,
}

impl Record for RetentionPolicy {
    const KIND: &'static str = "retention";
    const VERSION: u8 = 1;
}

fn key(name: &str) -> Vec<u8> {
    format!("retention\0{name}").into_bytes()
}

const PREFIX: &[u8] = b"retention\0";

impl RetentionPolicy {
    /// Checks names, patterns and durations; the message says what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!(
                "name {:?}: lowercase letters, digits and '-', at most 63",
                self.name
            ));
        }
        if self.namespaces.is_empty() {
            return Err("namespaces: required (a namespace or a pattern with *)".into());
        }
        for (field, value) in [
            ("keepYoungerThan", &self.keep_younger_than),
            ("deleteTagsNotPushedFor", &self.delete_tags_not_pushed_for),
        ] {
            if let Some(v) = value {
                humantime::parse_duration(v)
                    .map_err(|e| format!("{field} {v:?} is not a duration: {e}"))?;
            }
        }
        if self.keep_tag_revisions == Some(0) {
            return Err("keepTagRevisions: at least 1 (the current image is always kept)".into());
        }
        Ok(())
    }

    /// The prune this policy amounts to.
    pub fn options(&self) -> PruneOptions {
        let duration =
            |v: &Option<String>| v.as_deref().and_then(|d| humantime::parse_duration(d).ok());
        let keep_younger_than = duration(&self.keep_younger_than);
        PruneOptions {
            keep_tag_revisions: self.keep_tag_revisions.unwrap_or(usize::MAX),
            // Untagged content is protected for as long as young history is (an hour at least,
            // so a push in progress keeps its layers).
            keep_younger_than: keep_younger_than
                .unwrap_or_default()
                .max(Duration::from_secs(3600)),
            all: true,
            namespace: None,
            confirm: !self.dry_run,
            tag_rules: Some(TagRules {
                namespaces: self.namespaces.clone(),
                keep_tags: self.keep_tags.clone(),
                delete_tags_not_pushed_for: duration(&self.delete_tags_not_pushed_for),
                keep_tag_revisions: self.keep_tag_revisions,
                keep_younger_than,
            }),
        }
    }
}

/// The policies stored through the API.
pub fn stored(meta: &dyn MetadataStore) -> Result<Vec<RetentionPolicy>> {
    let mut out = Vec::new();
    meta.visit::<Error>(PREFIX, |_, v| {
        out.push(decode(v)?);
        Ok(())
    })?;
    Ok(out)
}

impl ImageStreams {
    /// Stores (creates or replaces) a policy.
    pub async fn put_retention(&self, policy: RetentionPolicy) -> Result<()> {
        policy.validate().map_err(Error::BadRequest)?;
        self.registry()
            .write_changes_as(move |tx, _| {
                tx.put(&key(&policy.name), &encode(&policy))?;
                Ok::<_, TxError<Error>>(())
            })
            .await
    }

    /// Deletes a stored policy; false when there was none.
    pub async fn delete_retention(&self, name: &str) -> Result<bool> {
        let k = key(name);
        self.registry()
            .write_changes_as(move |tx, _| {
                let existed = tx.get(&k)?.is_some();
                tx.delete(&k)?;
                Ok::<_, TxError<Error>>(existed)
            })
            .await
    }

    /// Applies every policy (`configured` ones first, then stored ones) once.
    pub async fn apply_retention(
        &self,
        configured: &[RetentionPolicy],
    ) -> Result<Vec<(String, PruneReport)>> {
        let mut policies = configured.to_vec();
        policies.extend(stored(self.registry().metadata().as_ref())?);
        let mut out = Vec::new();
        for policy in policies {
            let report = self.prune_images(&policy.options()).await?;
            log(&policy, &report);
            out.push((policy.name.clone(), report));
        }
        Ok(out)
    }
}

fn log(policy: &RetentionPolicy, report: &PruneReport) {
    let verb = if policy.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for row in &report.history {
        tracing::info!(policy = %policy.name, stream = %row.stream, image = %row.image,
            tags = %row.tags.join(","), "retention {verb} history");
    }
    for row in &report.manifest_links {
        tracing::info!(policy = %policy.name, repository = %row.repository, digest = %row.digest,
            "retention {verb} a manifest link");
    }
    for image in &report.images {
        tracing::info!(policy = %policy.name, %image, "retention {verb} an image");
    }
}

/// Applies the policies every `interval` until aborted.
pub fn spawn(
    streams: ImageStreams,
    configured: Vec<RetentionPolicy>,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval.max(Duration::from_secs(1)));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = streams.apply_retention(&configured).await {
                tracing::warn!(error = %e, "applying retention policies failed");
            }
        }
    })
}
