//! The image.openshift.io/v1 operations: streams, istags, isimages, mappings and images, each
//! write one transaction through the registry's store (so the push path and the API share the
//! same indexes, resourceVersions and watch events).

use std::collections::BTreeMap;

use berth_storage::record::decode;
use berth_storage::{TxError, Txn};
use serde::{Deserialize, Serialize};

use super::error::{Cause, Error, Result};
use super::image;
use super::mapping::{self, apply_mapping, Mapping};
use super::notice::Origin;
use super::reach::Reach;
use super::spec_tags;
use super::store::{
    self, delete_stream, get, keys, load_checked, load_head, load_tags, save_stream,
};
use super::types::*;
use crate::registry::{Namespace, Registry, RepositoryHosts, StreamName};

// The ImageStreamTag view of one tag (spec §1.3).
/// ImageStreamTag represents an Image that is retrieved by tag name from an ImageStream. Use
/// this resource to interact with the tags and images in an image stream by tag, or to see
/// the image details for a particular tag. The image associated with this resource is the most
/// recently successfully tagged, imported, or pushed image.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamTag {
    /// The versioned schema of this representation: `ImageStreamTag`.
    #[serde(default = "istag_kind")]
    pub kind: String,
    /// The group and version of the schema: `image.openshift.io/v1`.
    #[serde(default = "api")]
    pub api_version: String,
    /// Standard object's metadata; the name is `<stream>:<tag>`.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Tag is the spec tag associated with this image stream tag, and it may be null if only
    /// pushes have occurred to this image stream.
    #[serde(default)]
    pub tag: Option<TagReference>,
    /// Generation is the current generation of the tagged image - if tag is provided and this
    /// value is not equal to the tag generation, a user has requested an import that has not
    /// completed, or conditions will be filled out indicating any error.
    #[serde(default)]
    pub generation: i64,
    /// LookupPolicy indicates whether this tag will handle image references in this
    /// namespace.
    #[serde(default)]
    pub lookup_policy: LookupPolicy,
    /// Conditions is an array of conditions that apply to the image stream tag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<TagEventCondition>,
    /// Image associated with the ImageStream and tag.
    #[serde(default)]
    pub image: Image,
}

fn istag_kind() -> String {
    "ImageStreamTag".into()
}
fn api() -> String {
    API_VERSION.into()
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageStreamImage {
    pub kind: String,
    pub api_version: String,
    pub metadata: ObjectMeta,
    pub image: Image,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageStreamMapping {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub image: Image,
    #[serde(default)]
    pub tag: String,
}

/// Fills what is derived on every read: `status.dockerImageRepository` (the internal host) and,
/// when a public host is configured, `status.publicDockerImageRepository`.
pub fn decorate(hosts: &RepositoryHosts, mut s: ImageStream) -> ImageStream {
    let path = format!("{}/{}", s.metadata.namespace, s.metadata.name);
    s.status.docker_image_repository = format!("{}/{path}", hosts.internal);
    s.status.public_docker_image_repository = hosts
        .public
        .as_ref()
        .map(|h| format!("{h}/{path}"))
        .unwrap_or_default();
    s.kind = "ImageStream".into();
    s.api_version = API_VERSION.into();
    s
}

#[derive(Clone)]
pub struct ImageStreams {
    registry: Registry,
}

fn abort<T>(e: Error) -> std::result::Result<T, TxError<Error>> {
    Err(TxError::Abort(e))
}

fn stream_name_causes(ns: &str, name: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Err(e) = Namespace::parse(ns) {
        causes.push(Cause::invalid("metadata.namespace", ns, &e.to_string()));
    }
    if name.is_empty() {
        causes.push(Cause::required("metadata.name"));
    } else if let Err(e) = StreamName::parse(name) {
        causes.push(Cause::invalid("metadata.name", name, &e.to_string()));
    }
    causes
}

/// The Image already recorded under `name`, or for content this registry holds but has no
/// Image of, one made from the stored manifest.
fn recorded_image(tx: &mut dyn Txn, name: &str) -> store::TxResult<Option<Image>> {
    if let Some(image) = get::<Image>(tx, &keys::image(name))? {
        return Ok(Some(image));
    }
    let Ok(digest) = name.parse::<berth_storage::Digest>() else {
        return Ok(None);
    };
    let key = crate::registry::records::keys::manifest(&digest);
    let Some(record) = get::<crate::registry::records::ManifestRecord>(tx, &key)? else {
        return Ok(None);
    };
    let Ok(parsed) =
        crate::registry::manifest::parse(Some(&record.media_type), record.content.as_bytes())
    else {
        return Ok(None);
    };
    // The config blob is not at hand inside a transaction: the Image lacks only its metadata.
    Ok(Some(image::build(name, String::new(), &parsed, None)))
}

impl ImageStreams {
    pub fn new(registry: Registry) -> Self {
        ImageStreams { registry }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn host(&self) -> &str {
        self.registry.internal_host()
    }

    /// Fills what is derived on every read (the status's repositories).
    pub fn decorate(&self, s: ImageStream) -> ImageStream {
        decorate(self.registry.hosts(), s)
    }

    fn not_found(name: &str) -> Error {
        Error::NotFound {
            resource: "imagestreams",
            name: name.to_string(),
        }
    }

    pub fn resource_version(&self) -> Result<u64> {
        Ok(store::current_resource_version(
            self.registry.metadata().as_ref(),
        )?)
    }

    // ---- streams

    /// The whole stream (every tag and history entry).
    pub fn get(&self, ns: &str, name: &str) -> Result<ImageStream> {
        let s = store::read_stream(self.registry.metadata().as_ref(), ns, name)?
            .ok_or_else(|| Self::not_found(name))?;
        Ok(self.decorate(s))
    }

    /// Whether the stream exists (one read, whatever its size).
    pub fn exists(&self, ns: &str, name: &str) -> Result<bool> {
        Ok(self
            .registry
            .metadata()
            .get(&keys::stream(ns, name))?
            .is_some())
    }

    /// Streams of `ns` (or of every namespace), with the resourceVersion the list reflects.
    pub fn list(&self, ns: Option<&str>) -> Result<(Vec<ImageStream>, u64)> {
        // Read the version first: a watch from it can only replay more, never miss.
        let rv = self.resource_version()?;
        let mut out = Vec::new();
        for head in self.list_heads(ns)? {
            let (ns, name) = (&head.metadata.namespace, &head.metadata.name);
            // A stream deleted since the scan is simply not listed.
            if let Some(s) = store::read_stream(self.registry.metadata().as_ref(), ns, name)? {
                out.push(self.decorate(s));
            }
        }
        Ok((out, rv))
    }

    /// The stream with every tag but each tag's top event only (what import decisions and
    /// istag listings need, at a cost independent of the history's length).
    pub fn get_tops(&self, ns: &str, name: &str) -> Result<ImageStream> {
        let s = store::read_tops(self.registry.metadata().as_ref(), ns, name)?
            .ok_or_else(|| Self::not_found(name))?;
        Ok(self.decorate(s))
    }

    /// [`ImageStreams::get_tops`] of every stream of `ns`, or of every namespace.
    pub fn list_tops(&self, ns: Option<&str>) -> Result<Vec<ImageStream>> {
        let mut out = Vec::new();
        for head in self.list_heads(ns)? {
            let (ns, name) = (&head.metadata.namespace, &head.metadata.name);
            if let Some(s) = store::read_tops(self.registry.metadata().as_ref(), ns, name)? {
                out.push(self.decorate(s));
            }
        }
        Ok(out)
    }

    /// The heads (metadata and spec without tags) of the streams of `ns`, or of every
    /// namespace.
    /// The namespaces that hold at least one stream, in order: one short scan per namespace.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        Ok(store::namespaces(
            self.registry.metadata().as_ref(),
            b"is\0",
        )?)
    }

    pub fn list_heads(&self, ns: Option<&str>) -> Result<Vec<ImageStream>> {
        let meta = self.registry.metadata();
        let prefix = keys::streams(ns);
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(&prefix, after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, v) in page {
                out.push(decode(&v)?);
            }
        }
        Ok(out)
    }

    /// Runs a whole-stream write: reads the stream, then runs `body` in a transaction that
    /// starts from that snapshot, again when the stream changed in between.
    pub(super) async fn write_whole<T, F>(&self, ns: &str, name: &str, body: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut dyn Txn, Option<store::Loaded>, &mut Vec<super::Change>) -> store::TxResult<T>
            + Send
            + Sync
            + 'static,
    {
        let body = std::sync::Arc::new(body);
        for _ in 0..crate::registry::MAX_STREAM_RETRIES {
            let snapshot = store::read_stream(self.registry.metadata().as_ref(), ns, name)?;
            let body = body.clone();
            let result = self
                .registry
                .write_changes_as(move |tx, changes| {
                    let loaded = match &snapshot {
                        Some(s) => load_checked(tx, s)?,
                        None => None,
                    };
                    body(tx, loaded, changes)
                })
                .await;
            match result {
                Err(Error::Retry) => continue,
                other => return other,
            }
        }
        Err(Error::Retry)
    }

    pub async fn create(
        &self,
        ns: &str,
        mut stream: ImageStream,
        reach: Reach,
    ) -> Result<ImageStream> {
        stream.metadata.namespace = ns.to_string();
        let name = stream.metadata.name.clone();
        let mut causes = stream_name_causes(ns, &name);
        causes.extend(super::labels::validate(&stream.metadata.labels));
        causes.extend(spec_tags::validate(&stream.spec.tags, |i| {
            format!("spec.tags[{i}]")
        }));
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "ImageStream",
                name,
                causes,
            });
        }
        let host = self.host().to_string();
        let sources = spec_tags::Sources::prepare(
            self.registry.metadata().as_ref(),
            ns,
            &name,
            &stream.spec.tags,
            &reach,
        )?;
        let ns = ns.to_string();
        let created = self
            .registry
            .write_changes_as(move |tx, changes| {
                if load_head(tx, &ns, &name)?.is_some() {
                    return abort(Error::AlreadyExists {
                        resource: "imagestreams",
                        name: name.clone(),
                    });
                }
                let mut s = stream.clone();
                let fresh = mapping::new_stream(&ns, &name);
                s.metadata.uid = fresh.metadata.uid;
                s.metadata.creation_timestamp = fresh.metadata.creation_timestamp;
                s.metadata.generation = 1;
                s.status = ImageStreamStatus::default();
                for t in &mut s.spec.tags {
                    t.generation = None;
                }
                s.normalize();
                let changed = spec_tags::assign_generations(None, &mut s);
                let mut reach = reach.clone();
                spec_tags::process(tx, &mut s, &changed, &host, &mut reach, &sources)?;
                save_stream(tx, None, &mut s, changes, &reach, Origin::Update)?;
                Ok(s)
            })
            .await?;
        Ok(self.decorate(created))
    }

    /// PUT on a stream (§3.2): spec changes only; status is kept; resourceVersion required.
    pub async fn update(
        &self,
        ns: &str,
        name: &str,
        new: ImageStream,
        reach: Reach,
    ) -> Result<ImageStream> {
        self.update_inner(ns, name, new, false, reach).await
    }

    /// PUT on `/status`: status changes only. New history entries must name images by digest,
    /// and content the caller cannot read is refused by `reach` (cluster-admins may).
    pub async fn update_status(
        &self,
        ns: &str,
        name: &str,
        new: ImageStream,
        reach: Reach,
    ) -> Result<ImageStream> {
        let mut causes = Vec::new();
        for (i, t) in new.status.tags.iter().enumerate() {
            for (j, e) in t.items.iter().enumerate() {
                if !e.image.is_empty() && e.image.parse::<berth_storage::Digest>().is_err() {
                    causes.push(Cause::invalid(
                        format!("status.tags[{i}].items[{j}].image"),
                        &e.image,
                        "must be a digest (<algorithm>:<hex>)",
                    ));
                }
            }
        }
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "ImageStream",
                name: name.to_string(),
                causes,
            });
        }
        self.update_inner(ns, name, new, true, reach).await
    }

    async fn update_inner(
        &self,
        ns: &str,
        name: &str,
        new: ImageStream,
        status_only: bool,
        reach: Reach,
    ) -> Result<ImageStream> {
        if new.metadata.resource_version.is_empty() {
            return Err(Error::Invalid {
                kind: "ImageStream",
                name: name.to_string(),
                causes: vec![Cause::invalid(
                    "metadata.resourceVersion",
                    "",
                    "must be specified for an update",
                )],
            });
        }
        if !new.metadata.name.is_empty() && new.metadata.name != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new.metadata.name
            )));
        }
        super::labels::check(name, &new.metadata.labels)?;
        let causes = spec_tags::validate(&new.spec.tags, |i| format!("spec.tags[{i}]"));
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "ImageStream",
                name: name.to_string(),
                causes,
            });
        }
        let sources = if status_only {
            spec_tags::Sources::default()
        } else {
            spec_tags::Sources::prepare(
                self.registry.metadata().as_ref(),
                ns,
                name,
                &new.spec.tags,
                &reach,
            )?
        };
        let (name_c, host) = (name.to_string(), self.host().to_string());
        let updated = self
            .write_whole(ns, name, move |tx, loaded, changes| {
                let name = name_c.clone();
                let Some(loaded) = loaded else {
                    return abort(Self::not_found(&name));
                };
                let old = loaded.stream();
                if old.metadata.resource_version != new.metadata.resource_version {
                    return abort(Error::Conflict {
                        resource: "imagestreams",
                        name: name.clone(),
                        message: "the object has been modified; please apply your changes to the latest version and try again".into(),
                    });
                }
                let mut s = old.clone();
                let mut reach = reach.clone();
                if status_only {
                    s.status.tags = new.status.tags.clone();
                    s.normalize();
                } else {
                    s.metadata.labels = new.metadata.labels.clone();
                    s.metadata.annotations = new.metadata.annotations.clone();
                    let mut spec = new.spec.clone();
                    for t in &mut spec.tags {
                        // Users may only reset a generation to 0 (to force re-processing).
                        if t.generation != Some(0) {
                            t.generation = old.spec_tag(&t.name).and_then(|o| o.generation);
                        }
                    }
                    s.spec = spec;
                    s.normalize();
                    if s.spec != old.spec || s.metadata.generation == 0 {
                        s.metadata.generation += 1;
                    }
                    let changed = spec_tags::assign_generations(Some(old), &mut s);
                    spec_tags::process(tx, &mut s, &changed, &host, &mut reach, &sources)?;
                }
                save_stream(tx, Some(&loaded), &mut s, changes, &reach, Origin::Update)?;
                Ok(s)
            })
            .await?;
        // The write's copy holds every tag; its history is what was stored.
        Ok(self.decorate(updated))
    }

    pub async fn delete(&self, ns: &str, name: &str) -> Result<ImageStream> {
        let name_c = name.to_string();
        let gone = self
            .write_whole(ns, name, move |tx, loaded, changes| {
                let Some(old) = loaded else {
                    return abort(Self::not_found(&name_c));
                };
                delete_stream(tx, &old, changes)?;
                Ok(old.stream().clone())
            })
            .await?;
        Ok(self.decorate(gone))
    }

    // ---- istags

    fn image_of(&self, name: &str) -> Result<Option<Image>> {
        match self.registry.metadata().get(&keys::image(name))? {
            Some(b) => Ok(Some(decode(&b)?)),
            None => Ok(None),
        }
    }

    fn istag_view(&self, s: &ImageStream, tag: &str, image: Image) -> ImageStreamTag {
        let status = s.status_tag(tag);
        let top = status.and_then(|t| t.items.first());
        let spec = s.spec_tag(tag).cloned();
        let mut image = image;
        if let Some(reference) = super::history::resolve_reference(s, tag) {
            image.docker_image_reference = reference;
        }
        let mut annotations: BTreeMap<String, String> = BTreeMap::new();
        if let Some(a) = spec.as_ref().and_then(|t| t.annotations.clone()) {
            annotations.extend(a.clone());
            image.metadata.annotations.extend(a);
        }
        ImageStreamTag {
            kind: istag_kind(),
            api_version: api(),
            metadata: ObjectMeta {
                name: format!("{}:{tag}", s.metadata.name),
                namespace: s.metadata.namespace.clone(),
                uid: s.metadata.uid.clone(),
                resource_version: s.metadata.resource_version.clone(),
                creation_timestamp: top.map(|e| e.created.clone()),
                labels: s.metadata.labels.clone(),
                annotations,
                ..Default::default()
            },
            tag: spec,
            generation: top.map(|e| e.generation).unwrap_or(0),
            lookup_policy: s.spec.lookup_policy.clone(),
            conditions: status.map(|t| t.conditions.clone()).unwrap_or_default(),
            image,
        }
    }

    pub fn get_tag(&self, ns: &str, stream: &str, tag: &str) -> Result<ImageStreamTag> {
        let missing = || Error::NotFound {
            resource: "imagestreamtags",
            name: format!("{stream}:{tag}"),
        };
        let s = store::read_tag(self.registry.metadata().as_ref(), ns, stream, tag)?
            .map(|s| self.decorate(s))
            .ok_or_else(|| Error::NotFound {
                resource: "imagestreamtags",
                name: stream.to_string(),
            })?;
        let image_name = s.current_image(tag).ok_or_else(missing)?.to_string();
        let image = self.image_of(&image_name)?.ok_or_else(missing)?;
        Ok(self.istag_view(&s, tag, image))
    }

    /// Every tag with an image of every stream in `ns` (image carries only name and reference).
    pub fn list_tags(&self, ns: &str) -> Result<Vec<ImageStreamTag>> {
        let meta = self.registry.metadata();
        let mut out = Vec::new();
        for head in self.list_heads(Some(ns))? {
            let Some(s) = store::read_tops(meta.as_ref(), ns, &head.metadata.name)? else {
                continue;
            };
            let s = &self.decorate(s);
            for t in &s.status.tags {
                let Some(image) = s.current_image(&t.tag) else {
                    continue;
                };
                let stub = Image {
                    kind: "Image".into(),
                    api_version: API_VERSION.into(),
                    metadata: ObjectMeta {
                        name: image.to_string(),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                out.push(self.istag_view(s, &t.tag, stub));
            }
        }
        Ok(out)
    }

    /// POST (create_only) or PUT of an istag: sets the spec tag, creating the stream if
    /// missing, then processes it like a stream update.
    pub async fn put_tag(
        &self,
        ns: &str,
        stream: &str,
        tag: &str,
        body: ImageStreamTag,
        create_only: bool,
        reach: Reach,
    ) -> Result<ImageStreamTag> {
        let name = format!("{stream}:{tag}");
        let mut causes = stream_name_causes(ns, stream);
        if crate::registry::Tag::parse(tag).is_err() {
            causes.push(Cause::invalid(
                "metadata.name",
                &name,
                "tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
            ));
        }
        let Some(mut spec) = body.tag.clone() else {
            if create_only {
                causes.push(Cause::required("tag"));
            } else {
                return Err(Error::BadRequest(format!("imagestreamtag {tag} is not a spec tag in imagestream {ns}/{stream}, cannot be updated")));
            }
            return Err(Error::Invalid {
                kind: "ImageStreamTag",
                name,
                causes,
            });
        };
        if let Some(a) = &spec.annotations {
            if !a.is_empty() && *a != body.metadata.annotations {
                causes.push(Cause::invalid("tag.annotations", "", "tag annotations must not be provided or must be equal to the object meta annotations"));
            }
        }
        spec.name = tag.to_string();
        spec.annotations = Some(body.metadata.annotations.clone()).filter(|a| !a.is_empty());
        causes.extend(spec_tags::validate(std::slice::from_ref(&spec), |_| {
            "tag".to_string()
        }));
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "ImageStreamTag",
                name,
                causes,
            });
        }
        let expected_rv = body.metadata.resource_version.clone();
        let sources = spec_tags::Sources::prepare(
            self.registry.metadata().as_ref(),
            ns,
            stream,
            std::slice::from_ref(&spec),
            &reach,
        )?;
        // The tag, and a tag of this stream it tracks (its top is copied).
        let mut load: Vec<String> = vec![tag.to_string()];
        load.extend(spec_tags::source_tag_in_stream(ns, stream, &spec));
        let (nsc, streamc, tagc, host) = (
            ns.to_string(),
            stream.to_string(),
            tag.to_string(),
            self.host().to_string(),
        );
        self.registry
            .write_changes_as(move |tx, changes| {
                let names: Vec<&str> = load.iter().map(String::as_str).collect();
                let loaded = load_tags(tx, &nsc, &streamc, &names)?;
                let old = loaded.as_ref().map(|l| l.stream());
                if !expected_rv.is_empty() {
                    match &old {
                        None => {
                            return abort(Error::NotFound {
                                resource: "imagestreamtags",
                                name: streamc.clone(),
                            })
                        }
                        Some(o) if o.metadata.resource_version != expected_rv => {
                            return abort(Error::Conflict {
                                resource: "imagestreamtags",
                                name: format!("{streamc}:{tagc}"),
                                message: format!(
                                    "another caller has updated the resource version to {}",
                                    o.metadata.resource_version
                                ),
                            })
                        }
                        _ => {}
                    }
                }
                if create_only && old.as_ref().is_some_and(|o| o.spec_tag(&tagc).is_some()) {
                    return abort(Error::AlreadyExists {
                        resource: "imagestreamtags",
                        name: format!("{streamc}:{tagc}"),
                    });
                }
                let mut s = old
                    .cloned()
                    .unwrap_or_else(|| mapping::new_stream(&nsc, &streamc));
                let mut spec = spec.clone();
                spec.generation = if spec.generation == Some(0) {
                    Some(0)
                } else {
                    None
                };
                s.spec.tags.retain(|t| t.name != tagc);
                s.spec.tags.push(spec);
                s.normalize();
                if old.is_some() {
                    s.metadata.generation += 1;
                }
                let changed = spec_tags::assign_generations(old, &mut s);
                let mut reach = reach.clone();
                spec_tags::process(tx, &mut s, &changed, &host, &mut reach, &sources).map_err(
                    |e| match e {
                        // istag bodies name the field `tag.from`, not `spec.tags[i].from`.
                        TxError::Abort(Error::Invalid { causes, .. }) => {
                            TxError::Abort(Error::Invalid {
                                kind: "ImageStreamTag",
                                name: format!("{streamc}:{tagc}"),
                                causes: causes
                                    .into_iter()
                                    .map(|c| Cause {
                                        field: c.field.replace("spec.tags[0]", "tag"),
                                        ..c
                                    })
                                    .collect(),
                            })
                        }
                        other => other,
                    },
                )?;
                save_stream(tx, loaded.as_ref(), &mut s, changes, &reach, Origin::Tag)?;
                Ok(())
            })
            .await?;
        let s = store::read_tag(self.registry.metadata().as_ref(), ns, stream, tag)?
            .map(|s| self.decorate(s))
            .ok_or_else(|| Self::not_found(stream))?;
        let image = match s.current_image(tag) {
            Some(i) => self.image_of(i)?.unwrap_or_default(),
            None => Image::default(),
        };
        Ok(self.istag_view(&s, tag, image))
    }

    pub async fn delete_tag(&self, ns: &str, stream: &str, tag: &str) -> Result<()> {
        let (ns, stream, tag) = (ns.to_string(), stream.to_string(), tag.to_string());
        self.registry
            .write_changes_as(move |tx, changes| {
                if !mapping::delete_tag(tx, &ns, &stream, &tag, changes)? {
                    return abort(Error::NotFound {
                        resource: "imagestreamtags",
                        name: format!("{stream}:{tag}"),
                    });
                }
                Ok(())
            })
            .await
    }

    // ---- isimage, mapping, images

    pub fn get_stream_image(&self, ns: &str, stream: &str, id: &str) -> Result<ImageStreamImage> {
        let meta = self.registry.metadata();
        let s: ImageStream = match meta.get(&keys::stream(ns, stream))? {
            Some(b) => decode(&b)?,
            None => {
                return Err(Error::NotFound {
                    resource: "imagestreamimages",
                    name: stream.to_string(),
                })
            }
        };
        let found = spec_tags::lookup(meta.as_ref(), ns, stream, id)?;
        let image_name = spec_tags::one_image(stream, id, found)?;
        let image = self.image_of(&image_name)?.ok_or_else(|| Error::NotFound {
            resource: "imagestreamimages",
            name: format!("{stream}@{id}"),
        })?;
        Ok(ImageStreamImage {
            kind: "ImageStreamImage".into(),
            api_version: API_VERSION.into(),
            metadata: ObjectMeta {
                name: format!("{stream}@{image_name}"),
                namespace: ns.to_string(),
                uid: s.metadata.uid.clone(),
                resource_version: s.metadata.resource_version.clone(),
                creation_timestamp: image.metadata.creation_timestamp.clone(),
                annotations: s.metadata.annotations.clone(),
                ..Default::default()
            },
            image,
        })
    }

    /// POST of an ImageStreamMapping: the push path's code, but a missing stream is NotFound.
    /// The Image of content this registry holds is the one made from the stored manifest; the
    /// body may repeat its metadata but not contradict it. For a digest berth does not hold,
    /// the body's Image is kept until that content is pushed or imported.
    pub async fn create_mapping(
        &self,
        ns: &str,
        mut m: ImageStreamMapping,
        reach: Reach,
    ) -> Result<()> {
        // The seed's example names its Image only in the reference (`...@sha256:...`); an
        // Image's name is its digest, so that names it.
        if m.image.metadata.name.is_empty() {
            if let Some((_, digest)) = m.image.docker_image_reference.rsplit_once('@') {
                if digest.parse::<berth_storage::Digest>().is_ok() {
                    m.image.metadata.name = digest.to_string();
                }
            }
        }
        let mut causes = Vec::new();
        if let Err(e) = Namespace::parse(ns) {
            causes.push(Cause::invalid("metadata.namespace", ns, &e.to_string()));
        }
        if m.metadata.name.is_empty() {
            causes.push(Cause::required("metadata.name"));
        }
        if m.tag.is_empty() {
            causes.push(Cause::required("tag"));
        } else if crate::registry::Tag::parse(&m.tag).is_err() {
            causes.push(Cause::invalid(
                "tag",
                &m.tag,
                "must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
            ));
        }
        if m.image.metadata.name.is_empty() {
            causes.push(Cause::required("image.metadata.name"));
        } else if m
            .image
            .metadata
            .name
            .parse::<berth_storage::Digest>()
            .is_err()
        {
            causes.push(Cause::invalid(
                "image.metadata.name",
                &m.image.metadata.name,
                "must be a digest (<algorithm>:<hex>)",
            ));
        }
        if m.image.docker_image_reference.is_empty() {
            causes.push(Cause::required("image.dockerImageReference"));
        }
        if !causes.is_empty() {
            return Err(Error::Invalid {
                kind: "ImageStreamMapping",
                name: m.metadata.name,
                causes,
            });
        }
        let (ns, host) = (ns.to_string(), self.host().to_string());
        let mut given = m.image.clone();
        given.metadata.resource_version.clear();
        self.registry
            .write_changes_as(move |tx, changes| {
                if let Ok(repo) =
                    crate::registry::RepositoryName::parse(&format!("{ns}/{}", m.metadata.name))
                {
                    // First, so a refusal does not depend on what else exists.
                    reach.admit(tx, &repo, &given.metadata.name)?;
                }
                let image = match recorded_image(tx, &given.metadata.name)? {
                    Some(recorded) => {
                        let causes = image::contradictions(&recorded, &given);
                        if !causes.is_empty() {
                            return abort(Error::Invalid {
                                kind: "ImageStreamMapping",
                                name: m.metadata.name.clone(),
                                causes,
                            });
                        }
                        recorded
                    }
                    None => given.clone(),
                };
                apply_mapping(
                    tx,
                    &Mapping {
                        namespace: &ns,
                        name: &m.metadata.name,
                        tags: &[m.tag.as_str()],
                        image: &image,
                        create_stream: false,
                        public_host: &host,
                        reach: &reach,
                        origin: Origin::Mapping,
                    },
                    changes,
                )
            })
            .await
    }

    pub fn get_image(&self, name: &str) -> Result<Image> {
        self.image_of(name)?.ok_or_else(|| Error::NotFound {
            resource: "images",
            name: name.to_string(),
        })
    }

    pub fn list_images(&self) -> Result<(Vec<Image>, u64)> {
        let meta = self.registry.metadata();
        let rv = self.resource_version()?;
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = meta.scan(&keys::images(), after.as_deref(), 500)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, v) in page {
                out.push(decode(&v)?);
            }
        }
        Ok((out, rv))
    }

    pub async fn delete_image(&self, name: &str) -> Result<Image> {
        let name = name.to_string();
        self.registry
            .write_changes_as(move |tx: &mut dyn Txn, changes| {
                let Some((image, _)) = store::delete_image_record(tx, &name)? else {
                    return abort(Error::NotFound {
                        resource: "images",
                        name: name.clone(),
                    });
                };
                changes.push(super::Change::Image {
                    kind: super::ChangeKind::Deleted,
                    image: image.clone(),
                });
                Ok(image)
            })
            .await
    }
}
