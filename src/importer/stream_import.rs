//! ImageStreamImport (spec §1.6, §3.8): import named images, or a whole repository's tags, into
//! a stream in one request; `import: false` only reports what would be imported.

use serde::{Deserialize, Serialize};

use super::fetch::{self, Fetched, ImportMode, ImportSource};
use super::reference::ImageReference;
use super::Importer;
use crate::imagestream::import::{record, ImportFailure, REPOSITORY_CHECK_ANNOTATION};
use crate::imagestream::mapping::new_stream;
use crate::imagestream::reach::Reach;
use crate::imagestream::store::{load_tags, save_stream};
use crate::imagestream::types::{
    now_rfc3339, Image, ImageStream, ObjectMeta, ObjectReference, TagImportPolicy, TagReference,
    TagReferencePolicy, API_VERSION,
};
use crate::imagestream::{Cause, Error, Result};
use crate::registry::{StreamName, Tag};

/// Tags imported from one repository at most; the rest are listed in `additionalTags`
/// (OpenShift's `maxImagesBulkImportedPerRepository`).
pub const MAX_REPOSITORY_TAGS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImport {
    #[serde(default = "kind")]
    pub kind: String,
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ImportSpec,
    #[serde(default)]
    pub status: ImportStatus,
}

fn kind() -> String {
    "ImageStreamImport".into()
}
fn api_version() -> String {
    API_VERSION.into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    #[serde(default)]
    pub import: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageImportSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageImportSpec {
    pub from: ObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<LocalObjectReference>,
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
    #[serde(default)]
    pub include_manifest: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalObjectReference {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryImportSpec {
    pub from: ObjectReference,
    #[serde(default)]
    pub import_policy: TagImportPolicy,
    #[serde(default)]
    pub reference_policy: TagReferencePolicy,
    #[serde(default)]
    pub include_manifest: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImageStream>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageImportStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryImportStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageImportStatus {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Image>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryImportStatus {
    pub status: Status,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageImportStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_tags: Vec<String>,
}

/// A `metav1.Status` as an import status carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default)]
    pub code: u16,
}

impl Status {
    fn success() -> Status {
        Status {
            status: "Success".into(),
            message: String::new(),
            reason: String::new(),
            code: 200,
        }
    }

    fn failure(f: &ImportFailure) -> Status {
        let code = match f.reason.as_str() {
            "NotFound" => 404,
            "Unauthorized" => 401,
            "Forbidden" => 403,
            "TooManyRequests" => 429,
            "Invalid" => 422,
            _ => 500,
        };
        Status {
            status: "Failure".into(),
            message: f.message.clone(),
            reason: f.reason.clone(),
            code,
        }
    }
}

/// One image to import and where it goes.
struct Entry {
    source: ImportSource,
    to: Option<String>,
    import_policy: TagImportPolicy,
    reference_policy: TagReferencePolicy,
    outcome: Option<std::result::Result<Fetched, ImportFailure>>,
}

impl Importer {
    /// Runs an ImageStreamImport for stream `isi.metadata.name` in `ns` and returns it with
    /// its status filled.
    pub async fn import_stream(
        &self,
        ns: &str,
        mut isi: ImageStreamImport,
        hosts: &crate::registry::RepositoryHosts,
    ) -> Result<ImageStreamImport> {
        let name = isi.metadata.name.clone();
        let mut entries = validate(&isi)?;
        self.admit_sources(&isi, &entries).await?;
        let mut repository_status = None;
        if let Some(repo) = &isi.spec.repository {
            let (status, repo_entries) = self.repository_entries(ns, repo).await;
            entries.extend(repo_entries);
            repository_status = Some(status);
        }
        for e in &mut entries {
            e.outcome = Some(self.fetch(ns, &e.source).await);
        }
        if isi.spec.import {
            let stream = self.record_import(ns, &name, &entries).await?;
            isi.status.import = Some(crate::imagestream::service::decorate(hosts, stream));
        }
        let statuses: Vec<ImageImportStatus> = entries.iter().map(image_status).collect();
        let explicit = isi.spec.images.len();
        isi.status.images = statuses[..explicit].to_vec();
        if let Some(mut status) = repository_status {
            status.images = statuses[explicit..].to_vec();
            let failed = status
                .images
                .iter()
                .filter(|i| i.status.status != "Success")
                .count();
            if failed > 0 && status.status.status == "Success" {
                status.status = Status {
                    status: "Failure".into(),
                    message: format!(
                        "{failed} of the images from this repository failed to import"
                    ),
                    reason: "ImportFailed".into(),
                    code: 500,
                };
            }
            isi.status.repository = Some(status);
        }
        isi.kind = kind();
        isi.api_version = api_version();
        isi.metadata.namespace = ns.to_string();
        Ok(isi)
    }

    /// Refuses the whole request (403), before anything is fetched, when a source's registry is
    /// not allowed for import.
    async fn admit_sources(&self, isi: &ImageStreamImport, entries: &[Entry]) -> Result<()> {
        let mut sources: Vec<(&str, bool)> = entries
            .iter()
            .map(|e| (e.source.from.as_str(), e.source.insecure))
            .collect();
        if let Some(repo) = &isi.spec.repository {
            sources.push((&repo.from.name, repo.import_policy.insecure));
        }
        for (from, insecure) in sources {
            // `validate` has refused references that do not parse.
            let Ok(reference) = ImageReference::parse(from) else {
                continue;
            };
            if let Err(refused) = self.admit(&reference, insecure).await {
                return Err(Error::Forbidden {
                    resource: "imagestreamimports",
                    name: isi.metadata.name.clone(),
                    message: refused.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The tags of a repository import, in OpenShift's priority order, the first
    /// [`MAX_REPOSITORY_TAGS`] as entries and the rest as additional tags.
    async fn repository_entries(
        &self,
        ns: &str,
        repo: &RepositoryImportSpec,
    ) -> (RepositoryImportStatus, Vec<Entry>) {
        let failed = |f: ImportFailure| RepositoryImportStatus {
            status: Status::failure(&f),
            images: Vec::new(),
            additional_tags: Vec::new(),
        };
        let reference = match ImageReference::parse(&repo.from.name) {
            Ok(r) => r,
            Err(message) => {
                return (
                    failed(ImportFailure {
                        reason: "Invalid".into(),
                        message,
                    }),
                    Vec::new(),
                )
            }
        };
        let remote = match fetch::connect(
            self.secrets(),
            self.settings(),
            ns,
            &reference,
            repo.import_policy.insecure,
        ) {
            Ok(r) => r,
            Err(f) => return (failed(f), Vec::new()),
        };
        let mut tags = match remote.list_tags().await {
            Ok(t) => t,
            Err(e) => {
                return (
                    failed(ImportFailure {
                        reason: e.reason().into(),
                        message: e.to_string(),
                    }),
                    Vec::new(),
                )
            }
        };
        crate::imagestream::tag_order::prioritize(&mut tags);
        let additional = tags.split_off(tags.len().min(MAX_REPOSITORY_TAGS));
        let mode = ImportMode::parse(&repo.import_policy.import_mode).unwrap_or(ImportMode::Legacy);
        let entries = tags
            .into_iter()
            .map(|tag| Entry {
                source: ImportSource {
                    from: reference.with_tag(&tag).exact(),
                    insecure: repo.import_policy.insecure,
                    mode,
                    prefer_os: None,
                    prefer_arch: None,
                },
                to: Some(tag),
                import_policy: repo.import_policy.clone(),
                reference_policy: repo.reference_policy.clone(),
                outcome: None,
            })
            .collect();
        let status = RepositoryImportStatus {
            status: Status::success(),
            images: Vec::new(),
            additional_tags: additional,
        };
        (status, entries)
    }

    /// Writes the imported images and their tags into the stream (created if missing), all in
    /// one transaction. Each tag's spec becomes `from DockerImage` at the new generation, so
    /// the controller sees nothing pending.
    async fn record_import(&self, ns: &str, name: &str, entries: &[Entry]) -> Result<ImageStream> {
        let (ns, name) = (ns.to_string(), name.to_string());
        let tagged: Vec<(TagReference, std::result::Result<Fetched, ImportFailure>)> = entries
            .iter()
            .filter_map(|e| {
                let to = e.to.clone()?;
                let outcome = e.outcome.clone()?;
                let spec = TagReference {
                    name: to,
                    from: Some(ObjectReference {
                        kind: "DockerImage".into(),
                        name: e.source.from.clone(),
                        namespace: String::new(),
                    }),
                    import_policy: e.import_policy.clone(),
                    reference_policy: e.reference_policy.clone(),
                    ..Default::default()
                };
                Some((spec, outcome))
            })
            .collect();
        let untagged: Vec<Fetched> = entries
            .iter()
            .filter(|e| e.to.is_none())
            .filter_map(|e| e.outcome.clone()?.ok())
            .collect();
        self.registry()
            .write_changes_as(move |tx, changes| {
                let names: Vec<&str> = tagged.iter().map(|(s, _)| s.name.as_str()).collect();
                let old = load_tags(tx, &ns, &name, &names)?;
                let mut stream = old
                    .as_ref()
                    .map(|l| l.stream().clone())
                    .unwrap_or_else(|| new_stream(&ns, &name));
                if old.is_some() {
                    stream.metadata.generation += 1;
                }
                let generation = stream.metadata.generation;
                for (spec, outcome) in &tagged {
                    let mut spec = spec.clone();
                    spec.generation = Some(generation);
                    // The tag's own annotations (platform preferences) survive a re-import.
                    spec.annotations = stream
                        .spec_tag(&spec.name)
                        .and_then(|t| t.annotations.clone());
                    stream.spec.tags.retain(|t| t.name != spec.name);
                    stream.spec.tags.push(spec.clone());
                    if let Ok(fetched) = outcome {
                        fetch::store::<Error>(tx, fetched, changes)?;
                    }
                    let result = outcome
                        .as_ref()
                        .map(|f| (f.reference.clone(), f.digest().to_string()))
                        .map_err(Clone::clone);
                    record(&mut stream, &spec, result);
                }
                for fetched in &untagged {
                    fetch::store::<Error>(tx, fetched, changes)?;
                }
                stream
                    .metadata
                    .annotations
                    .insert(REPOSITORY_CHECK_ANNOTATION.into(), now_rfc3339());
                // Imported content was fetched and verified; its blobs are proven on first pull.
                save_stream(
                    tx,
                    old.as_ref(),
                    &mut stream,
                    changes,
                    &Reach::trusted(),
                    crate::imagestream::Origin::Import,
                )?;
                Ok(stream)
            })
            .await
    }
}

fn image_status(e: &Entry) -> ImageImportStatus {
    let tag = e.to.clone().unwrap_or_default();
    match &e.outcome {
        Some(Ok(f)) => ImageImportStatus {
            status: Status::success(),
            image: Some(f.image.clone()),
            tag,
            manifests: f.children.clone(),
        },
        Some(Err(failure)) => ImageImportStatus {
            status: Status::failure(failure),
            image: None,
            tag,
            manifests: Vec::new(),
        },
        None => ImageImportStatus {
            status: Status::failure(&ImportFailure {
                reason: "InternalError".into(),
                message: "not imported".into(),
            }),
            image: None,
            tag,
            manifests: Vec::new(),
        },
    }
}

/// Checks the request (422 with the field on a problem) and lists its explicit images.
fn validate(isi: &ImageStreamImport) -> Result<Vec<Entry>> {
    let name = &isi.metadata.name;
    let mut causes = Vec::new();
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else if let Err(e) = StreamName::parse(name) {
        causes.push(Cause::invalid("metadata.name", name, &e.to_string()));
    }
    if isi.spec.images.is_empty() && isi.spec.repository.is_none() {
        causes.push(Cause::required("spec.images"));
    }
    let mut entries = Vec::new();
    for (i, image) in isi.spec.images.iter().enumerate() {
        let field = |f: &str| format!("spec.images[{i}].{f}");
        if image.from.kind != "DockerImage" {
            causes.push(Cause::invalid(
                field("from.kind"),
                &image.from.kind,
                "only DockerImage is supported",
            ));
        }
        let reference = match ImageReference::parse(&image.from.name) {
            Ok(r) => Some(r),
            Err(e) => {
                causes.push(Cause::invalid(field("from.name"), &image.from.name, &e));
                None
            }
        };
        let mode = ImportMode::parse(&image.import_policy.import_mode);
        if mode.is_none() {
            causes.push(Cause::invalid(
                field("importPolicy.importMode"),
                &image.import_policy.import_mode,
                "invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'",
            ));
        }
        // `to` defaults to the source's tag when it has one.
        let to = image.to.as_ref().map(|t| t.name.clone()).or_else(|| {
            reference
                .as_ref()
                .and_then(|r| r.digest.is_none().then(|| r.tag.clone()).flatten())
        });
        if let Some(t) = &to {
            if Tag::parse(t).is_err() {
                causes.push(Cause::invalid(
                    field("to.name"),
                    t,
                    "must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
                ));
            }
        }
        entries.push(Entry {
            source: ImportSource {
                from: image.from.name.clone(),
                insecure: image.import_policy.insecure,
                mode: mode.unwrap_or(ImportMode::Legacy),
                prefer_os: None,
                prefer_arch: None,
            },
            to,
            import_policy: image.import_policy.clone(),
            reference_policy: image.reference_policy.clone(),
            outcome: None,
        });
    }
    if let Some(repo) = &isi.spec.repository {
        match ImageReference::parse(&repo.from.name) {
            Ok(r)
                if r.digest.is_some()
                    || repo
                        .from
                        .name
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n.contains(':')) =>
            {
                causes.push(Cause::invalid(
                    "spec.repository.from.name",
                    &repo.from.name,
                    "you must specify an image repository, not a tag or ID",
                ))
            }
            Ok(_) => {}
            Err(e) => causes.push(Cause::invalid(
                "spec.repository.from.name",
                &repo.from.name,
                &e,
            )),
        }
        if ImportMode::parse(&repo.import_policy.import_mode).is_none() {
            causes.push(Cause::invalid(
                "spec.repository.importPolicy.importMode",
                &repo.import_policy.import_mode,
                "invalid import mode, valid modes are '', 'Legacy', 'PreserveOriginal'",
            ));
        }
    }
    if causes.is_empty() {
        Ok(entries)
    } else {
        Err(Error::Invalid {
            kind: "ImageStreamImport",
            name: name.clone(),
            causes,
        })
    }
}
