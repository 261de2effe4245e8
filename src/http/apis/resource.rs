//! The resources berth serves under the Kubernetes API, with the names every other part of the
//! API layer (errors, discovery, routing) spells them by. One table, so an error message, a
//! discovery document and a route can never disagree about a plural or a kind.

/// `image.openshift.io`: the only non-core API group berth serves.
pub const GROUP: &str = "image.openshift.io";
/// The group's only (and so preferred) version.
pub const VERSION: &str = "v1";
/// `image.openshift.io/v1`, the `apiVersion` of every object in the group.
pub const GROUP_VERSION: &str = "image.openshift.io/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Images,
    ImageStreams,
    ImageStreamTags,
    ImageStreamImages,
    ImageStreamMappings,
    ImageStreamImports,
    /// Core-group namespaces: only named in errors (`namespaces "x" not found`).
    Namespaces,
    /// Core-group secrets: registry credentials for imports.
    Secrets,
    /// berth.io webhook subscriptions.
    Webhooks,
}

impl Resource {
    /// The lowercase plural used in paths, RBAC and NotFound errors.
    pub fn plural(self) -> &'static str {
        match self {
            Resource::Images => "images",
            Resource::ImageStreams => "imagestreams",
            Resource::ImageStreamTags => "imagestreamtags",
            Resource::ImageStreamImages => "imagestreamimages",
            Resource::ImageStreamMappings => "imagestreammappings",
            Resource::ImageStreamImports => "imagestreamimports",
            Resource::Namespaces => "namespaces",
            Resource::Secrets => "secrets",
            Resource::Webhooks => "webhooks",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Resource::Images => "image",
            Resource::ImageStreams => "imagestream",
            Resource::ImageStreamTags => "imagestreamtag",
            Resource::ImageStreamImages => "imagestreamimage",
            Resource::ImageStreamMappings => "imagestreammapping",
            Resource::ImageStreamImports => "imagestreamimport",
            Resource::Namespaces => "namespace",
            Resource::Secrets => "secret",
            Resource::Webhooks => "webhook",
        }
    }

    /// The object kind, as in `kind:` and Invalid errors.
    pub fn kind(self) -> &'static str {
        match self {
            Resource::Images => "Image",
            Resource::ImageStreams => "ImageStream",
            Resource::ImageStreamTags => "ImageStreamTag",
            Resource::ImageStreamImages => "ImageStreamImage",
            Resource::ImageStreamMappings => "ImageStreamMapping",
            Resource::ImageStreamImports => "ImageStreamImport",
            Resource::Namespaces => "Namespace",
            Resource::Secrets => "Secret",
            Resource::Webhooks => "Webhook",
        }
    }

    /// The API group; empty for the core group.
    pub fn group(self) -> &'static str {
        match self {
            Resource::Namespaces | Resource::Secrets => "",
            Resource::Webhooks => crate::webhooks::types::GROUP,
            _ => GROUP,
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(self, Resource::Images | Resource::Namespaces)
    }

    /// `imagestreams.image.openshift.io` (Kubernetes' GroupResource string; bare for core).
    pub fn qualified(self) -> String {
        qualify(self.plural(), self.group())
    }

    /// `ImageStream.image.openshift.io` (Kubernetes' GroupKind string; bare for core).
    pub fn qualified_kind(self) -> String {
        qualify(self.kind(), self.group())
    }

    /// `group/version`, or `v1` for core.
    pub fn api_version(self) -> &'static str {
        match self {
            _ if self.group().is_empty() => "v1",
            Resource::Webhooks => crate::webhooks::types::API_VERSION,
            _ => GROUP_VERSION,
        }
    }

    /// A list response: `{"kind":"ImageStreamList","apiVersion":...,"metadata":
    /// {"resourceVersion":"N"},"items":[...]}`. Clients resume watches from that
    /// resourceVersion, and the Python client requires the `List` kind suffix and `items`
    /// (an empty array, never null).
    pub fn list(self, resource_version: u64, items: Vec<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({
            "kind": format!("{}List", self.kind()),
            "apiVersion": self.api_version(),
            "metadata": { "resourceVersion": resource_version.to_string() },
            "items": items,
        })
    }
}

fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names() {
        assert_eq!(
            Resource::ImageStreams.qualified(),
            "imagestreams.image.openshift.io"
        );
        assert_eq!(
            Resource::ImageStreamTags.qualified_kind(),
            "ImageStreamTag.image.openshift.io"
        );
        assert_eq!(Resource::Namespaces.qualified(), "namespaces");
        assert!(!Resource::Images.namespaced());
        assert!(Resource::ImageStreamMappings.namespaced());
    }

    #[test]
    fn list_objects() {
        let l = Resource::ImageStreams.list(7, Vec::new());
        assert_eq!(
            l,
            serde_json::json!({
                "kind": "ImageStreamList", "apiVersion": "image.openshift.io/v1",
                "metadata": {"resourceVersion": "7"}, "items": []
            })
        );
        assert_eq!(Resource::Namespaces.list(1, Vec::new())["apiVersion"], "v1");
    }
}
