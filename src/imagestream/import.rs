//! What an import does to a stream (spec §3.2, §3.8): which tags need one, and how its outcome,
//! an image or a failure, is recorded. Pure functions; fetching is the importer's job.

use super::history::{add_tag_event, update_tracking_tags};
use super::types::{now_rfc3339, ImageStream, TagEvent, TagEventCondition, TagReference};

pub const IMPORT_SUCCESS: &str = "ImportSuccess";
/// Set on a stream after every import attempt (the time of the last check).
pub const REPOSITORY_CHECK_ANNOTATION: &str = "openshift.io/image.dockerRepositoryCheck";

/// A spec tag the importer fetches: a DockerImage source that is not a mere reference.
pub fn importable(tag: &TagReference) -> bool {
    !tag.reference && tag.from.as_ref().is_some_and(|f| f.kind == "DockerImage")
}

/// The generation the tag's status has caught up with: its top item's, or that of the
/// ImportSuccess condition a failed import left (so a failure does not loop).
pub fn observed_generation(stream: &ImageStream, tag: &str) -> i64 {
    let Some(status) = stream.status_tag(tag) else {
        return 0;
    };
    let top = status.items.first().map_or(0, |i| i.generation);
    let failed = status
        .conditions
        .iter()
        .filter(|c| c.kind == IMPORT_SUCCESS)
        .map(|c| c.generation)
        .max()
        .unwrap_or(0);
    top.max(failed)
}

/// Whether an importable tag's spec is ahead of its status: "import pending" (§3.2).
pub fn pending(stream: &ImageStream, tag: &TagReference) -> bool {
    importable(tag) && tag.generation.unwrap_or(0) > observed_generation(stream, &tag.name)
}

/// The tags of `stream` whose import is pending.
pub fn pending_tags(stream: &ImageStream) -> impl Iterator<Item = &TagReference> {
    stream.spec.tags.iter().filter(|t| pending(stream, t))
}

/// The tags re-imported on every scheduler tick.
pub fn scheduled_tags(stream: &ImageStream) -> impl Iterator<Item = &TagReference> {
    stream
        .spec
        .tags
        .iter()
        .filter(|t| importable(t) && t.import_policy.scheduled)
}

/// Why an import failed, as a Kubernetes Status reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFailure {
    pub reason: String,
    pub message: String,
}

/// Records an import of `spec` (the spec tag as it was when the import started) into
/// `stream`. Returns whether the stream changed; an outcome for a spec that has changed since
/// is dropped, since the change triggers an import of its own.
///
/// A success adds `{now, reference, image}` to the history at the spec's generation (§3.1:
/// an unchanged image only moves the top item's generation) and clears the conditions, and the
/// tag's trackers follow. A failure sets the ImportSuccess=False condition at that generation,
/// rewritten only when it says something new.
pub fn record(
    stream: &mut ImageStream,
    spec: &TagReference,
    outcome: Result<(String, String), ImportFailure>,
) -> bool {
    let current = stream.spec_tag(&spec.name);
    if current.map(|t| (&t.from, t.generation, &t.import_policy.import_mode))
        != Some((&spec.from, spec.generation, &spec.import_policy.import_mode))
    {
        return false;
    }
    let generation = spec.generation.unwrap_or(stream.metadata.generation);
    match outcome {
        Ok((reference, image)) => {
            let event = TagEvent {
                created: now_rfc3339(),
                docker_image_reference: reference,
                image,
                generation,
            };
            let status = stream.status_tag_mut(&spec.name);
            let had_conditions = !status.conditions.is_empty();
            status.conditions.clear();
            if add_tag_event(stream, &spec.name, event.clone()) {
                update_tracking_tags(stream, &spec.name, &event);
                true
            } else {
                had_conditions
            }
        }
        Err(failure) => {
            let status = stream.status_tag_mut(&spec.name);
            let same = status.conditions.iter().any(|c| {
                c.kind == IMPORT_SUCCESS
                    && c.status == "False"
                    && c.reason == failure.reason
                    && c.message == failure.message
                    && c.generation == generation
            });
            if same {
                return false;
            }
            status.conditions.retain(|c| c.kind != IMPORT_SUCCESS);
            status.conditions.push(TagEventCondition {
                kind: IMPORT_SUCCESS.into(),
                status: "False".into(),
                last_transition_time: Some(now_rfc3339()),
                reason: failure.reason,
                message: failure.message,
                generation,
            });
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagestream::types::{ObjectReference, TagImportPolicy};

    fn stream_with(tag: TagReference) -> ImageStream {
        let mut s = ImageStream::default();
        s.metadata.name = "app".into();
        s.metadata.namespace = "ns".into();
        s.metadata.generation = 2;
        s.spec.tags.push(tag);
        s
    }

    fn docker_tag(generation: i64) -> TagReference {
        TagReference {
            name: "latest".into(),
            from: Some(ObjectReference {
                kind: "DockerImage".into(),
                name: "quay.io/x/app:1".into(),
                namespace: String::new(),
            }),
            generation: Some(generation),
            import_policy: TagImportPolicy::default(),
            ..Default::default()
        }
    }

    fn failure(message: &str) -> ImportFailure {
        ImportFailure {
            reason: "NotFound".into(),
            message: message.into(),
        }
    }

    #[test]
    fn success_catches_up_and_a_repeat_changes_nothing() {
        let spec = docker_tag(2);
        let mut s = stream_with(spec.clone());
        assert!(pending(&s, &spec));
        let ok = || Ok(("quay.io/x/app@sha256:aa".into(), "sha256:aa".into()));
        assert!(record(&mut s, &spec, ok()));
        assert!(!pending(&s, &spec));
        assert!(
            !record(&mut s, &spec, ok()),
            "same image at the same generation"
        );
        assert_eq!(s.status_tag("latest").unwrap().items.len(), 1);
    }

    #[test]
    fn failure_sets_the_condition_once_and_stops_the_loop() {
        let spec = docker_tag(2);
        let mut s = stream_with(spec.clone());
        assert!(record(&mut s, &spec, Err(failure("gone"))));
        assert!(
            !pending(&s, &spec),
            "the condition's generation counts as observed"
        );
        assert!(!record(&mut s, &spec, Err(failure("gone"))));
        assert!(record(&mut s, &spec, Err(failure("other"))));
        let conditions = &s.status_tag("latest").unwrap().conditions;
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].message, "other");
        // A later success clears it.
        assert!(record(
            &mut s,
            &spec,
            Ok(("quay.io/x/app@sha256:aa".into(), "sha256:aa".into()))
        ));
        assert!(s.status_tag("latest").unwrap().conditions.is_empty());
    }

    #[test]
    fn an_outcome_for_a_stale_spec_is_dropped() {
        let spec = docker_tag(2);
        let mut s = stream_with(docker_tag(3));
        assert!(!record(&mut s, &spec, Err(failure("gone"))));
        assert!(s.status_tag("latest").is_none());
    }
}
