//! Tag history rules: the merge of a new event (spec §3.1), tracking tags (§3.5) and pull-spec
//! resolution through the reference policy (§3.6). Pure functions over an ImageStream.

use super::types::{ImageStream, TagEvent};

/// Merges `next` into `tag`'s history. Returns whether anything changed.
pub fn add_tag_event(stream: &mut ImageStream, tag: &str, next: TagEvent) -> bool {
    let list = stream.status_tag_mut(tag);
    let Some(top) = list.items.first_mut() else {
        list.items.push(next);
        list.conditions.clear();
        return true;
    };
    let same_ref = top.docker_image_reference == next.docker_image_reference;
    let same_image = top.image == next.image;
    match (same_ref, same_image) {
        (true, true) if top.generation == next.generation => return false,
        (true, true) => top.generation = next.generation,
        (true, false) => {
            top.image = next.image;
            top.generation = next.generation;
        }
        (false, true) => {
            top.docker_image_reference = next.docker_image_reference;
            top.generation = next.generation;
        }
        (false, false) => list.items.insert(0, next),
    }
    list.conditions.clear();
    true
}

/// Spec tags of this stream that follow `tag` (`from` ImageStreamTag `tag` or `<stream>:tag`,
/// same namespace).
pub fn trackers_of(stream: &ImageStream, tag: &str) -> Vec<String> {
    let (ns, own) = (&stream.metadata.namespace, &stream.metadata.name);
    stream
        .spec
        .tags
        .iter()
        .filter(|s| s.name != tag)
        .filter(|s| super::spec_tags::source_tag_in_stream(ns, own, s).as_deref() == Some(tag))
        .map(|s| s.name.clone())
        .collect()
}

/// Gives every tracker of `tag` the event `event`, transitively (a tracker of a tracker
/// follows too), without looping on cycles.
pub fn update_tracking_tags(stream: &mut ImageStream, tag: &str, event: &TagEvent) {
    let mut pending = vec![tag.to_string()];
    let mut seen = vec![tag.to_string()];
    while let Some(source) = pending.pop() {
        for tracker in trackers_of(stream, &source) {
            if seen.contains(&tracker) {
                continue;
            }
            seen.push(tracker.clone());
            if add_tag_event(stream, &tracker, event.clone()) {
                pending.push(tracker);
            }
        }
    }
}

/// The pull spec clients should use for `tag` (§3.6): the source reference, or with the
/// `Local` policy `<status.dockerImageRepository>@<image>`.
pub fn resolve_reference(stream: &ImageStream, tag: &str) -> Option<String> {
    let top = stream.status_tag(tag)?.items.first()?;
    Some(resolve_event(stream, tag, top))
}

pub fn resolve_event(stream: &ImageStream, tag: &str, event: &TagEvent) -> String {
    let local = stream
        .spec_tag(tag)
        .is_some_and(|s| s.reference_policy.kind == "Local");
    if local && !stream.status.docker_image_repository.is_empty() && !event.image.is_empty() {
        format!("{}@{}", stream.status.docker_image_repository, event.image)
    } else {
        event.docker_image_reference.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::{ObjectReference, TagReference};
    use super::*;

    fn ev(reference: &str, image: &str, generation: i64) -> TagEvent {
        TagEvent {
            created: "2026-01-01T00:00:00Z".into(),
            docker_image_reference: reference.into(),
            image: image.into(),
            generation,
        }
    }

    fn items(s: &ImageStream, tag: &str) -> Vec<String> {
        s.status_tag(tag)
            .unwrap()
            .items
            .iter()
            .map(|e| e.image.clone())
            .collect()
    }

    #[test]
    fn merge_rules() {
        let mut s = ImageStream::default();
        assert!(add_tag_event(&mut s, "latest", ev("r@a", "a", 1)));
        assert!(
            !add_tag_event(&mut s, "latest", ev("r@a", "a", 1)),
            "same everything: no change"
        );
        assert!(add_tag_event(&mut s, "latest", ev("r@a", "a", 2)));
        assert_eq!(items(&s, "latest"), ["a"]);
        assert_eq!(s.status_tag("latest").unwrap().items[0].generation, 2);
        assert!(add_tag_event(&mut s, "latest", ev("r@b", "b", 2)));
        assert!(add_tag_event(&mut s, "latest", ev("r@a", "a", 2)));
        assert_eq!(
            items(&s, "latest"),
            ["a", "b", "a"],
            "newest first, never trimmed"
        );
        // Same reference, new image: replaced in place.
        assert!(add_tag_event(&mut s, "latest", ev("r@a", "c", 2)));
        assert_eq!(items(&s, "latest"), ["c", "b", "a"]);
        // Same image, new reference: reference replaced in place.
        assert!(add_tag_event(&mut s, "latest", ev("other@c", "c", 2)));
        assert_eq!(
            s.status_tag("latest").unwrap().items[0].docker_image_reference,
            "other@c"
        );
    }

    #[test]
    fn tracking_follows_same_stream_tags_transitively() {
        let mut s = ImageStream::default();
        s.metadata.name = "app".into();
        s.metadata.namespace = "ns".into();
        let track = |name: &str, from: &str| TagReference {
            name: name.into(),
            from: Some(ObjectReference {
                kind: "ImageStreamTag".into(),
                name: from.into(),
                namespace: String::new(),
            }),
            ..Default::default()
        };
        s.spec.tags = vec![
            track("stable", "latest"),
            track("prod", "app:stable"),
            track("other", "x:latest"),
        ];
        let e = ev("r@a", "a", 1);
        add_tag_event(&mut s, "latest", e.clone());
        update_tracking_tags(&mut s, "latest", &e);
        assert_eq!(items(&s, "stable"), ["a"]);
        assert_eq!(items(&s, "prod"), ["a"]);
        assert!(
            s.status_tag("other").is_none(),
            "other streams are not followed"
        );
    }

    #[test]
    fn reference_policy() {
        let mut s = ImageStream::default();
        s.status.docker_image_repository = "reg:5000/ns/app".into();
        add_tag_event(&mut s, "latest", ev("quay.io/x/y@sha256:1", "sha256:1", 1));
        assert_eq!(
            resolve_reference(&s, "latest").unwrap(),
            "quay.io/x/y@sha256:1"
        );
        s.spec.tags.push(TagReference {
            name: "latest".into(),
            reference_policy: crate::imagestream::types::TagReferencePolicy {
                kind: "Local".into(),
            },
            ..Default::default()
        });
        assert_eq!(
            resolve_reference(&s, "latest").unwrap(),
            "reg:5000/ns/app@sha256:1"
        );
    }
}
