//! `berth adm prune images` (OpenShift's `oc adm prune images`), done by the server.
//!
//! Per stream: keep revisions `0..keep_tag_revisions` of every tag and every entry younger than
//! the limit, drop the rest (and tags left empty); a stream younger than the limit keeps
//! everything. Then the repository keeps the manifests its history names, their children
//! (transitively), referrers of kept manifests and anything younger than the limit; other
//! manifest links go, and so do links of blobs no kept manifest uses. Finally an Image in no
//! stream's history whose manifest no repository links is deleted. What then has no reference
//! at all is garbage collection's to delete, after its grace period.
//!
//! Decisions come from scans; each write re-checks in its transaction that the stream (its
//! resourceVersion) and the repository (its link generation) did not change meanwhile, and
//! starts over for that stream if they did, so a concurrent push is never undone.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

use berth_storage::record::decode;
use berth_storage::{Digest, MetadataStore, MetadataStoreExt, TxError};
use serde::Serialize;

use super::error::{Error, Result};
use super::notice::{ImagePruned, Notice};
use super::reach::Reach;
use super::service::ImageStreams;
use super::store::{self, keys, load_checked, load_head, save_stream};
use super::types::{Image, ImageStream};
use super::{Change, ChangeKind};
use crate::registry::content;
use crate::registry::records::{keys as reg_keys, now_secs, BlobRecord, ManifestRecord};
use crate::registry::RepositoryName;

/// Unlinks per transaction, so each stays small whatever the repository holds.
const UNLINKS_PER_TXN: usize = 50;

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub keep_tag_revisions: usize,
    pub keep_younger_than: Duration,
    /// Prune imported images too (`false`: only those pushed here, `openshift.io/image.managed`).
    pub all: bool,
    /// Only this namespace's streams; Images (cluster-scoped) are then left alone.
    pub namespace: Option<String>,
    pub confirm: bool,
    /// A retention policy's rules instead of oc's (see [`TagRules`]); Images are then deleted
    /// only if this run took them out of history and no stream names them any more.
    pub tag_rules: Option<TagRules>,
}

impl PruneOptions {
    /// oc's defaults: 3 revisions, 60 minutes, imported images too, a dry run.
    pub fn oc_defaults() -> Self {
        PruneOptions {
            keep_tag_revisions: 3,
            keep_younger_than: Duration::from_secs(3600),
            all: true,
            namespace: None,
            confirm: false,
            tag_rules: None,
        }
    }
}

/// A retention policy's rules for the tags of the streams it covers.
#[derive(Debug, Clone, Default)]
pub struct TagRules {
    /// Namespaces covered: a name, or a pattern where `*` matches any run of characters.
    pub namespaces: String,
    /// Tags never touched (patterns as above).
    pub keep_tags: Vec<String>,
    /// Tags whose current image is older than this are deleted, history and spec.
    pub delete_tags_not_pushed_for: Option<Duration>,
    /// Revisions kept per tag (the current one always is).
    pub keep_tag_revisions: Option<usize>,
    /// Entries younger than this are kept.
    pub keep_younger_than: Option<Duration>,
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// What happens to one tag.
enum TagPlan {
    /// Keep the entries marked true.
    Keep(Vec<bool>),
    /// Remove the tag: its history and its spec.
    Delete,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRow {
    pub stream: String,
    pub image: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LinkRow {
    pub repository: String,
    pub digest: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    /// History entries removed from streams, one row per stream and image.
    pub history: Vec<HistoryRow>,
    pub manifest_links: Vec<LinkRow>,
    pub layer_links: Vec<LinkRow>,
    pub images: Vec<String>,
}

impl ImageStreams {
    pub async fn prune_images(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let cutoff = SystemTime::now()
            .checked_sub(opts.keep_younger_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = PruneReport {
            dry_run: !opts.confirm,
            ..PruneReport::default()
        };
        let mut referenced: HashSet<String> = HashSet::new();
        let mut heads = self.list_heads(opts.namespace.as_deref())?;
        if let Some(rules) = &opts.tag_rules {
            heads.retain(|h| glob_match(&rules.namespaces, &h.metadata.namespace));
        }
        for head in heads {
            let (ns, name) = (head.metadata.namespace.clone(), head.metadata.name.clone());
            let Some(kept) = self
                .prune_stream(&ns, &name, opts, cutoff, &mut report)
                .await?
            else {
                continue;
            };
            for t in &kept.status.tags {
                referenced.extend(t.items.iter().map(|e| e.image.clone()));
            }
            let path = format!("{ns}/{name}");
            let taken: HashSet<String> = report
                .history
                .iter()
                .filter(|r| r.stream == path)
                .map(|r| r.image.clone())
                .collect();
            if let Ok(repo) = RepositoryName::parse(&path) {
                self.prune_repository(&repo, &kept, &taken, opts, cutoff, &mut report)
                    .await?;
            }
        }
        if opts.tag_rules.is_some() {
            // Only what this run took out of history, if no stream at all names it now.
            let taken: HashSet<String> = report.history.iter().map(|r| r.image.clone()).collect();
            if !taken.is_empty() {
                let named = self.images_in_any_history()?;
                let unnamed: HashSet<String> = taken.difference(&named).cloned().collect();
                let everything_else: HashSet<String> = self
                    .all_image_names()?
                    .into_iter()
                    .filter(|n| !unnamed.contains(n))
                    .collect();
                self.prune_image_objects(&everything_else, opts, cutoff, &mut report)
                    .await?;
            }
        } else if opts.namespace.is_none() {
            self.prune_image_objects(&referenced, opts, cutoff, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Every image some stream's history names (from the per-stream image index).
    fn images_in_any_history(&self) -> Result<HashSet<String>> {
        Ok(last_parts(self.registry().metadata().as_ref(), b"isi\0")?
            .into_iter()
            .collect())
    }

    fn all_image_names(&self) -> Result<Vec<String>> {
        last_parts(self.registry().metadata().as_ref(), &keys::images())
    }

    /// The plan for one tag under oc's rules or the policy's.
    fn plan_tag(
        &self,
        meta: &dyn MetadataStore,
        tag: &super::types::NamedTagEventList,
        opts: &PruneOptions,
        cutoff: SystemTime,
    ) -> Result<TagPlan> {
        let Some(rules) = &opts.tag_rules else {
            let mut keep = Vec::new();
            for (revision, e) in tag.items.iter().enumerate() {
                keep.push(
                    revision < opts.keep_tag_revisions
                        || younger(Some(e.created.as_str()), cutoff)
                        || (!opts.all && !self.is_managed(meta, &e.image)?),
                );
            }
            return Ok(TagPlan::Keep(keep));
        };
        let all = vec![true; tag.items.len()];
        if rules.keep_tags.iter().any(|p| glob_match(p, &tag.tag)) {
            return Ok(TagPlan::Keep(all));
        }
        let now = SystemTime::now();
        if let (Some(idle), Some(top)) = (rules.delete_tags_not_pushed_for, tag.items.first()) {
            let since = now.checked_sub(idle).unwrap_or(SystemTime::UNIX_EPOCH);
            if !younger(Some(top.created.as_str()), since) {
                return Ok(TagPlan::Delete);
            }
        }
        if rules.keep_tag_revisions.is_none() && rules.keep_younger_than.is_none() {
            return Ok(TagPlan::Keep(all));
        }
        let age_cutoff = rules
            .keep_younger_than
            .and_then(|d| now.checked_sub(d))
            .unwrap_or(now);
        Ok(TagPlan::Keep(
            tag.items
                .iter()
                .enumerate()
                .map(|(revision, e)| {
                    revision == 0
                        || rules.keep_tag_revisions.is_some_and(|n| revision < n)
                        || (rules.keep_younger_than.is_some()
                            && younger(Some(e.created.as_str()), age_cutoff))
                })
                .collect(),
        ))
    }

    /// Trims one stream's history; returns the stream as it is (or would be) afterwards.
    async fn prune_stream(
        &self,
        ns: &str,
        name: &str,
        opts: &PruneOptions,
        cutoff: SystemTime,
        report: &mut PruneReport,
    ) -> Result<Option<ImageStream>> {
        for attempt in 0..crate::registry::MAX_STREAM_RETRIES {
            if attempt > 0 {
                // A busy stream changes between the read and the write: let a burst pass.
                tokio::time::sleep(retry_wait(attempt)).await;
            }
            let meta = self.registry().metadata().clone();
            let Some(snapshot) = store::read_stream(meta.as_ref(), ns, name)? else {
                return Ok(None);
            };
            // oc's rule; a policy's rules decide per tag instead.
            if opts.tag_rules.is_none()
                && younger(snapshot.metadata.creation_timestamp.as_deref(), cutoff)
            {
                return Ok(Some(snapshot));
            }
            let mut trimmed = snapshot.clone();
            let mut removed: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut deleted_tags = BTreeSet::new();
            for t in &mut trimmed.status.tags {
                let keep = match self.plan_tag(meta.as_ref(), t, opts, cutoff)? {
                    TagPlan::Keep(keep) => keep,
                    TagPlan::Delete => {
                        deleted_tags.insert(t.tag.clone());
                        vec![false; t.items.len()]
                    }
                };
                let mut kept = Vec::new();
                for (e, keep) in t.items.drain(..).zip(keep) {
                    if keep {
                        kept.push(e);
                    } else {
                        removed
                            .entry(e.image.clone())
                            .or_default()
                            .push(t.tag.clone());
                    }
                }
                t.items = kept;
            }
            trimmed
                .status
                .tags
                .retain(|t| !deleted_tags.contains(&t.tag));
            trimmed
                .spec
                .tags
                .retain(|t| !deleted_tags.contains(&t.name));
            trimmed
                .status
                .tags
                .retain(|t| !t.items.is_empty() || !t.conditions.is_empty());
            if removed.is_empty() {
                return Ok(Some(snapshot));
            }
            if opts.confirm {
                let (snap, new) = (snapshot.clone(), trimmed.clone());
                let written = self
                    .registry()
                    .write_changes_as(move |tx, changes| {
                        let Some(old) = load_checked(tx, &snap)? else {
                            return Ok(None);
                        };
                        let mut new = new.clone();
                        // Pruning only removes entries, so nothing new becomes reachable.
                        save_stream(
                            tx,
                            Some(&old),
                            &mut new,
                            changes,
                            &Reach::trusted(),
                            super::notice::Origin::Prune,
                        )?;
                        Ok(Some(new))
                    })
                    .await;
                match written {
                    Err(Error::Retry) => continue,
                    Err(e) => return Err(e),
                    Ok(None) => return Ok(None),
                    Ok(Some(new)) => trimmed = new,
                }
            }
            for (image, mut tags) in removed {
                tags.dedup();
                report.history.push(HistoryRow {
                    stream: format!("{ns}/{name}"),
                    image,
                    tags,
                });
            }
            return Ok(Some(trimmed));
        }
        Err(Error::Retry)
    }

    fn is_managed(&self, meta: &dyn MetadataStore, image: &str) -> Result<bool> {
        Ok(match meta.get(&keys::image(image))? {
            Some(v) => decode::<Image>(&v)?.is_managed(),
            None => false,
        })
    }

    /// Unlinks the manifests and blobs of `repo` that the kept history no longer needs.
    async fn prune_repository(
        &self,
        repo: &RepositoryName,
        stream: &ImageStream,
        taken: &HashSet<String>,
        opts: &PruneOptions,
        cutoff: SystemTime,
        report: &mut PruneReport,
    ) -> Result<()> {
        let meta = self.registry().metadata().clone();
        let cutoff_secs = unix(cutoff);
        for attempt in 0..crate::registry::MAX_STREAM_RETRIES {
            if attempt > 0 {
                tokio::time::sleep(retry_wait(attempt)).await;
            }
            let generation = read_generation(meta.as_ref(), repo)?;
            let head_rv = stream.metadata.resource_version.clone();
            let linked = scan_digests(meta.as_ref(), &reg_keys::repo_manifests(repo))?;
            let mut records: BTreeMap<Digest, ManifestRecord> = BTreeMap::new();
            for d in &linked {
                if let Some(v) = meta.get(&reg_keys::manifest(d))? {
                    records.insert(d.clone(), decode(&v)?);
                }
            }
            let mut kept: BTreeSet<Digest> = BTreeSet::new();
            let history: HashSet<&str> = stream
                .status
                .tags
                .iter()
                .flat_map(|t| t.items.iter().map(|e| e.image.as_str()))
                .collect();
            for d in &linked {
                // Youth protects untagged pushes, not what this run took out of history.
                let recent = !taken.contains(&d.to_string())
                    && records.get(d).is_some_and(|r| r.touched > cutoff_secs);
                let spared = !opts.all && !self.is_managed(meta.as_ref(), &d.to_string())?;
                if history.contains(d.to_string().as_str()) || recent || spared {
                    kept.insert(d.clone());
                }
            }
            // Children of kept indexes and referrers of kept manifests stay, to a fixpoint.
            loop {
                let before = kept.len();
                for (d, r) in &records {
                    if kept.contains(d) {
                        let (_, children) = r.names();
                        kept.extend(children.into_iter().filter(|c| records.contains_key(c)));
                    } else if r.subject.as_ref().is_some_and(|s| kept.contains(s)) {
                        kept.insert(d.clone());
                    }
                }
                if kept.len() == before {
                    break;
                }
            }
            let drop_manifests: Vec<Digest> = linked
                .iter()
                .filter(|d| !kept.contains(*d))
                .cloned()
                .collect();
            let used: HashSet<Digest> = kept
                .iter()
                .filter_map(|d| records.get(d))
                .flat_map(|r| r.names().0)
                .collect();
            let mut drop_blobs = Vec::new();
            for b in scan_digests(meta.as_ref(), &reg_keys::repo_blobs(repo))? {
                if used.contains(&b) {
                    continue;
                }
                let touched = match meta.get(&reg_keys::blob(&b))? {
                    Some(v) => decode::<BlobRecord>(&v)?.touched,
                    None => 0,
                };
                if touched <= cutoff_secs {
                    drop_blobs.push(b);
                }
            }
            let drop_pull_throughs: Vec<Digest> =
                scan_digests(meta.as_ref(), &reg_keys::repo_pull_throughs(repo))?
                    .into_iter()
                    .filter(|b| !used.contains(b))
                    .collect();
            if opts.confirm {
                match self
                    .unlink(
                        repo,
                        generation,
                        &head_rv,
                        &drop_manifests,
                        &drop_blobs,
                        &drop_pull_throughs,
                    )
                    .await
                {
                    Err(Error::Retry) => continue,
                    other => other?,
                }
            }
            let row = |d: &Digest| LinkRow {
                repository: repo.to_string(),
                digest: d.to_string(),
            };
            report.manifest_links.extend(drop_manifests.iter().map(row));
            report.layer_links.extend(drop_blobs.iter().map(row));
            return Ok(());
        }
        Err(Error::Retry)
    }

    /// Removes links in small transactions, each checking that the repository and its stream
    /// are as they were when the decision was made ([`Error::Retry`] otherwise).
    async fn unlink(
        &self,
        repo: &RepositoryName,
        mut generation: u64,
        head_rv: &str,
        manifests: &[Digest],
        blobs: &[Digest],
        pull_throughs: &[Digest],
    ) -> Result<()> {
        enum Item {
            Manifest(Digest),
            Blob(Digest),
            PullThrough(Digest),
        }
        let items: Vec<Item> = manifests
            .iter()
            .cloned()
            .map(Item::Manifest)
            .chain(blobs.iter().cloned().map(Item::Blob))
            .chain(pull_throughs.iter().cloned().map(Item::PullThrough))
            .collect();
        let mut chunks = items.chunks(UNLINKS_PER_TXN);
        let chunks: Vec<Vec<&Item>> = chunks.by_ref().map(|c| c.iter().collect()).collect();
        for chunk in chunks {
            let batch: Vec<(u8, Digest)> = chunk
                .iter()
                .map(|i| match i {
                    Item::Manifest(d) => (0, d.clone()),
                    Item::Blob(d) => (1, d.clone()),
                    Item::PullThrough(d) => (2, d.clone()),
                })
                .collect();
            let (repo, head_rv) = (repo.clone(), head_rv.to_string());
            generation = self
                .registry()
                .write_changes_as(move |tx, _changes| {
                    let (ns, name) = (repo.namespace().as_str(), repo.stream().as_str());
                    let rv = load_head(tx, ns, name)?.map(|h| h.metadata.resource_version);
                    if content::generation(tx, &repo)? != generation
                        || rv.as_deref().is_some_and(|rv| rv != head_rv)
                    {
                        return Err(TxError::Abort(Error::Retry));
                    }
                    let now = now_secs();
                    for (kind, d) in &batch {
                        match kind {
                            0 => {
                                content::unlink_manifest(tx, &repo, d, now)?;
                            }
                            1 => {
                                content::unlink_blob(tx, &repo, d, now)?;
                            }
                            _ => tx.delete(&reg_keys::pull_through(&repo, d))?,
                        }
                    }
                    content::generation(tx, &repo)
                })
                .await?;
        }
        Ok(())
    }

    /// Deletes Images no kept history names, whose manifest no repository links.
    async fn prune_image_objects(
        &self,
        referenced: &HashSet<String>,
        opts: &PruneOptions,
        cutoff: SystemTime,
        report: &mut PruneReport,
    ) -> Result<()> {
        let meta = self.registry().metadata().clone();
        // A dry run removed no links: count those it would have.
        let mut unlinked: BTreeMap<String, u64> = BTreeMap::new();
        for row in &report.manifest_links {
            *unlinked.entry(row.digest.clone()).or_default() += 1;
        }
        // Who held each image until this prune: the namespaces told of its deletion.
        let mut held: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        let history = report.history.iter().map(|r| (&r.image, &r.stream));
        let links = report
            .manifest_links
            .iter()
            .map(|r| (&r.digest, &r.repository));
        for (image, repo) in history.chain(links) {
            if let Some((ns, stream)) = repo.split_once('/') {
                held.entry(image.clone())
                    .or_default()
                    .entry(ns.to_string())
                    .or_default()
                    .insert(stream.to_string());
            }
        }
        let mut candidates = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(&keys::images(), after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, v) in page {
                let image: Image = decode(&v)?;
                let name = image.metadata.name.clone();
                if referenced.contains(&name)
                    || (opts.tag_rules.is_none()
                        && younger(image.metadata.creation_timestamp.as_deref(), cutoff))
                    || (!opts.all && !image.is_managed())
                {
                    continue;
                }
                candidates.push(name);
            }
        }
        for name in candidates {
            let deleted = if opts.confirm {
                let n = name.clone();
                let holders = held.remove(&name).unwrap_or_default();
                self.registry()
                    .write_changes_as(move |tx, changes| {
                        if let Ok(d) = n.parse::<Digest>() {
                            // Linked again since the scan (a push or tag): it stays.
                            if let Some(r) =
                                store::get::<ManifestRecord>(tx, &reg_keys::manifest(&d))?
                            {
                                if r.links > 0 {
                                    return Ok(false);
                                }
                            }
                        }
                        let Some((image, rv)) = store::delete_image_record(tx, &n)? else {
                            return Ok(false);
                        };
                        for (ns, streams) in &holders {
                            changes.push(Change::Notice(Notice::ImagePruned(ImagePruned {
                                namespace: ns.clone(),
                                streams: streams.iter().cloned().collect(),
                                image: n.clone(),
                                resource_version: rv,
                            })));
                        }
                        changes.push(Change::Image {
                            kind: ChangeKind::Deleted,
                            image,
                        });
                        Ok(true)
                    })
                    .await?
            } else {
                let going = unlinked.get(&name).copied().unwrap_or(0);
                let linked = match name.parse::<Digest>() {
                    Ok(d) => match meta.get(&reg_keys::manifest(&d))? {
                        Some(v) => decode::<ManifestRecord>(&v)?.links > going,
                        None => false,
                    },
                    Err(_) => false,
                };
                !linked
            };
            if deleted {
                report.images.push(name);
            }
        }
        Ok(())
    }
}

fn younger(timestamp: Option<&str>, cutoff: SystemTime) -> bool {
    timestamp
        .and_then(super::types::parse_rfc3339)
        .is_some_and(|t| t >= cutoff)
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_generation(meta: &dyn MetadataStore, repo: &RepositoryName) -> Result<u64> {
    Ok(match meta.get(&reg_keys::repository(repo))? {
        Some(v) => decode::<crate::registry::records::RepositoryRecord>(&v)?.generation,
        None => 0,
    })
}

/// The last key part (a digest, an image name) of every key under `prefix`.
fn last_parts(meta: &dyn MetadataStore, prefix: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    meta.visit::<Error>(prefix, |k, _| {
        out.push(String::from_utf8_lossy(reg_keys::last_part(k)).into_owned());
        Ok(())
    })?;
    Ok(out)
}

fn scan_digests(meta: &dyn MetadataStore, prefix: &[u8]) -> Result<Vec<Digest>> {
    Ok(last_parts(meta, prefix)?
        .iter()
        .filter_map(|d| d.parse().ok())
        .collect())
}

/// The wait before attempt `attempt` (from 1) of a whole-stream write that found the stream
/// changed: 20 ms doubling to 1 s, jittered, so the retries of a prune spread over about 5 s of
/// a busy stream's pushes instead of 10 back-to-back collisions.
fn retry_wait(attempt: usize) -> std::time::Duration {
    use std::time::Duration;
    crate::backoff::backoff(
        Duration::from_millis(20),
        Duration::from_secs(1),
        attempt as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn patterns_match_runs_of_characters_at_stars_only() {
        for (p, n, want) in [
            ("team", "team", true),
            ("team", "team-a", false),
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "tea", false),
            ("*", "", true),
            ("*-prod", "web-prod", true),
            ("*-prod", "web-production", false),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c", false),
            ("release-*", "release-1.2", true),
            ("*b*", "abc", true),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(glob_match(p, n), want, "{p} ~ {n}");
        }
    }
}
