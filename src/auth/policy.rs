//! Who may do what: one rule set for the registry (/v2) and the API (/apis).
//!
//! Namespace roles (bound per namespace): `view` pulls and reads streams; `edit` also pushes,
//! tags, imports and deletes tags; `admin` also manages role bindings and secrets. Cluster roles:
//! `cluster-admin` may do anything; `registry-viewer` lists and reads Images and the whole
//! catalog; `image-pruner` reads and deletes Images and manifests everywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Namespaces the seed reserves for the platform: only cluster-admins push there.
pub const RESERVED_NAMESPACES: [&str; 6] = [
    "default",
    "kube-public",
    "kube-system",
    "openshift",
    "openshift-infra",
    "openshift-node",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    View,
    Edit,
    Admin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterRole {
    ClusterAdmin,
    RegistryViewer,
    ImagePruner,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "view" => Some(Role::View),
            "edit" => Some(Role::Edit),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl ClusterRole {
    pub fn parse(s: &str) -> Option<ClusterRole> {
        match s {
            "cluster-admin" => Some(ClusterRole::ClusterAdmin),
            "registry-viewer" => Some(ClusterRole::RegistryViewer),
            "image-pruner" => Some(ClusterRole::ImagePruner),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::View => "view",
            Role::Edit => "edit",
            Role::Admin => "admin",
        })
    }
}

impl fmt::Display for ClusterRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterRole::ClusterAdmin => "cluster-admin",
            ClusterRole::RegistryViewer => "registry-viewer",
            ClusterRole::ImagePruner => "image-pruner",
        })
    }
}

/// What a request does, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Pull, and get/list/watch image streams, tags and stream images in a namespace.
    View(String),
    /// Push blobs and manifests; create, update and tag streams; mappings.
    Push(String),
    /// Create an image stream (a first push, or the API).
    CreateStream(String),
    /// Delete a tag (istag, or a manifest DELETE by tag) or a stream.
    DeleteTag(String),
    /// Import images into a stream.
    Import(String),
    /// Delete a manifest by digest (pruning).
    DeleteManifest(String),
    /// Read or manage the namespace's secrets.
    Secrets(String),
    /// Manage the namespace's role bindings.
    Bindings(String),
    /// Read or manage the namespace's webhook subscriptions.
    Webhooks(String),
    /// Read Images (cluster-scoped).
    ReadImages,
    /// Delete Images.
    DeleteImages,
    /// The whole catalog, or streams of every namespace.
    ReadAll,
    /// Users, tokens, cluster role bindings, signing keys.
    ManageUsers,
}

impl Action {
    pub fn namespace(&self) -> Option<&str> {
        match self {
            Action::View(ns)
            | Action::Push(ns)
            | Action::CreateStream(ns)
            | Action::DeleteTag(ns)
            | Action::Import(ns)
            | Action::DeleteManifest(ns)
            | Action::Secrets(ns)
            | Action::Bindings(ns)
            | Action::Webhooks(ns) => Some(ns),
            _ => None,
        }
    }

    /// The namespace role this action needs, if a namespace role can grant it at all.
    fn needs(&self) -> Option<Role> {
        match self {
            Action::View(_) => Some(Role::View),
            Action::Push(_)
            | Action::CreateStream(_)
            | Action::DeleteTag(_)
            | Action::Import(_) => Some(Role::Edit),
            Action::Secrets(_) | Action::Bindings(_) | Action::Webhooks(_) => Some(Role::Admin),
            _ => None,
        }
    }

    /// Writes into a namespace: refused in the reserved ones except for cluster-admins.
    fn writes(&self) -> bool {
        matches!(
            self,
            Action::Push(_) | Action::CreateStream(_) | Action::Import(_)
        )
    }

    /// Kubernetes' verb for messages (`cannot <verb> resource ...`).
    pub fn verb(&self) -> &'static str {
        match self {
            Action::View(_) | Action::ReadImages | Action::ReadAll | Action::Secrets(_) => "get",
            Action::Push(_)
            | Action::Import(_)
            | Action::Bindings(_)
            | Action::Webhooks(_)
            | Action::ManageUsers => "update",
            Action::CreateStream(_) => "create",
            Action::DeleteTag(_) | Action::DeleteManifest(_) | Action::DeleteImages => "delete",
        }
    }
}

/// What a caller holds: cluster roles and per-namespace roles.
pub trait Grants {
    fn cluster_roles(&self) -> &[ClusterRole];
    fn namespace_role(&self, ns: &str) -> Option<Role>;
}

/// The rule set.
pub fn allowed(who: &dyn Grants, action: &Action) -> bool {
    let cluster = who.cluster_roles();
    if cluster.contains(&ClusterRole::ClusterAdmin) {
        return true;
    }
    if action.writes()
        && action
            .namespace()
            .is_some_and(|ns| RESERVED_NAMESPACES.contains(&ns))
    {
        return false;
    }
    let pruner = cluster.contains(&ClusterRole::ImagePruner);
    let viewer = cluster.contains(&ClusterRole::RegistryViewer);
    match action {
        Action::ReadImages => viewer || pruner,
        Action::ReadAll => viewer,
        Action::DeleteImages | Action::DeleteManifest(_) => pruner,
        Action::ManageUsers => false,
        other => match (other.needs(), other.namespace()) {
            (Some(needed), Some(ns)) => who.namespace_role(ns).is_some_and(|r| r >= needed),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Who(Vec<ClusterRole>, Vec<(&'static str, Role)>);

    impl Grants for Who {
        fn cluster_roles(&self) -> &[ClusterRole] {
            &self.0
        }
        fn namespace_role(&self, ns: &str) -> Option<Role> {
            self.1.iter().find(|(n, _)| *n == ns).map(|(_, r)| *r)
        }
    }

    #[test]
    fn roles_grant_in_order_and_only_in_their_namespace() {
        let viewer = Who(vec![], vec![("a", Role::View)]);
        assert!(allowed(&viewer, &Action::View("a".into())));
        assert!(!allowed(&viewer, &Action::View("b".into())));
        assert!(!allowed(&viewer, &Action::Push("a".into())));
        assert!(!allowed(&viewer, &Action::ReadImages));
        let editor = Who(vec![], vec![("a", Role::Edit)]);
        assert!(allowed(&editor, &Action::Push("a".into())));
        assert!(allowed(&editor, &Action::Import("a".into())));
        assert!(!allowed(&editor, &Action::Secrets("a".into())));
        assert!(!allowed(&editor, &Action::DeleteManifest("a".into())));
        let admin = Who(vec![], vec![("a", Role::Admin)]);
        assert!(allowed(&admin, &Action::Secrets("a".into())));
        assert!(allowed(&admin, &Action::Bindings("a".into())));
        assert!(!allowed(&admin, &Action::ManageUsers));
    }

    #[test]
    fn cluster_roles_and_reserved_namespaces() {
        let ns_admin = Who(vec![], vec![("default", Role::Admin)]);
        assert!(!allowed(&ns_admin, &Action::Push("default".into())));
        assert!(allowed(&ns_admin, &Action::View("default".into())));
        let root = Who(vec![ClusterRole::ClusterAdmin], vec![]);
        assert!(allowed(&root, &Action::Push("default".into())));
        assert!(allowed(&root, &Action::ManageUsers));
        let viewer = Who(vec![ClusterRole::RegistryViewer], vec![]);
        assert!(allowed(&viewer, &Action::ReadImages) && allowed(&viewer, &Action::ReadAll));
        assert!(!allowed(&viewer, &Action::View("a".into())));
        assert!(!allowed(&viewer, &Action::DeleteImages));
        let pruner = Who(vec![ClusterRole::ImagePruner], vec![]);
        assert!(allowed(&pruner, &Action::DeleteImages));
        assert!(allowed(&pruner, &Action::DeleteManifest("a".into())));
        assert!(!allowed(&pruner, &Action::Push("a".into())));
    }
}
