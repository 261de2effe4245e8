//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/image.openshift.io`,
//! `/apis/image.openshift.io/v1`, `/apis/berth.io` and `/apis/berth.io/v1`, in the legacy
//! (non-aggregated) JSON form every client falls back to.
//!
//! Clients build their whole view of the server from these: the Python dynamic client reads
//! `/version` and `/apis` when constructed and `/apis/<group>/<version>` on first use, and maps
//! a kind to a URL only through the resource list below. So the list advertises exactly the
//! verbs `path::parse` routes, and nothing berth does not serve.

use http::StatusCode;
use serde_json::{json, Value};

use super::path::ApiEndpoint;
use super::resource::{Resource, GROUP, GROUP_VERSION, VERSION};
use crate::http::response::{json, Response};
use crate::webhooks::types as webhook_types;

/// The Kubernetes release whose API conventions berth follows (OpenShift 4.18's).
const KUBE_MAJOR: &str = "1";
const KUBE_MINOR: &str = "31";

/// One entry of an APIResourceList.
struct ApiResource {
    name: &'static str,
    /// The Kind; subresources report their parent's.
    resource: Resource,
    verbs: &'static [&'static str],
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
}

/// Verbs are sorted, as the apiserver emits them.
const IMAGE_RESOURCES: &[ApiResource] = &[
    ApiResource {
        name: "images",
        resource: Resource::Images,
        verbs: &["delete", "get", "list", "watch"],
        short_names: &[],
        categories: &[],
    },
    ApiResource {
        name: "imagestreamimages",
        resource: Resource::ImageStreamImages,
        verbs: &["get"],
        short_names: &["isimage"],
        categories: &[],
    },
    ApiResource {
        name: "imagestreamimports",
        resource: Resource::ImageStreamImports,
        verbs: &["create"],
        short_names: &[],
        categories: &[],
    },
    ApiResource {
        name: "imagestreammappings",
        resource: Resource::ImageStreamMappings,
        verbs: &["create"],
        short_names: &[],
        categories: &[],
    },
    ApiResource {
        name: "imagestreams",
        resource: Resource::ImageStreams,
        verbs: &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        short_names: &["is"],
        categories: &["all"],
    },
    ApiResource {
        name: "imagestreams/status",
        resource: Resource::ImageStreams,
        verbs: &["get", "update"],
        short_names: &[],
        categories: &[],
    },
    ApiResource {
        name: "imagestreamtags",
        resource: Resource::ImageStreamTags,
        verbs: &["create", "delete", "get", "list", "update"],
        short_names: &["istag"],
        categories: &[],
    },
];

/// berth's own group.
const BERTH_RESOURCES: &[ApiResource] = &[ApiResource {
    name: "webhooks",
    resource: Resource::Webhooks,
    verbs: &["create", "delete", "get", "list", "update", "watch"],
    short_names: &[],
    categories: &[],
}];

/// Core-group resources berth serves; none yet (namespaces and secrets may come later).
const CORE_RESOURCES: &[ApiResource] = &[
    // Read-only: the namespaces that hold something, as far as the caller may see.
    ApiResource {
        name: "namespaces",
        resource: Resource::Namespaces,
        verbs: &["get", "list"],
        short_names: &["ns"],
        categories: &[],
    },
    ApiResource {
        name: "secrets",
        resource: Resource::Secrets,
        verbs: &["create", "delete", "get", "list"],
        short_names: &[],
        categories: &[],
    },
];

impl ApiResource {
    fn to_json(&self) -> Value {
        let subresource = self.name.contains('/');
        let mut v = json!({
            "name": self.name,
            // The apiserver leaves singularName empty on subresources.
            "singularName": if subresource { "" } else { self.resource.singular() },
            "namespaced": self.resource.namespaced(),
            "kind": self.resource.kind(),
            "verbs": self.verbs,
        });
        if !self.short_names.is_empty() {
            v["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            v["categories"] = json!(self.categories);
        }
        v
    }
}

fn resource_list(group_version: &str, resources: &[ApiResource]) -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources.iter().map(ApiResource::to_json).collect::<Vec<_>>(),
    })
}

/// An APIGroup body; `/apis` lists them and `/apis/<group>` returns one.
fn api_group(name: &str, group_version: &str) -> Value {
    // The dynamic client marks a version preferred only when its entry equals
    // `preferredVersion` exactly, so both are built from one value.
    let version = json!({ "groupVersion": group_version, "version": VERSION });
    json!({
        "name": name,
        "versions": [version.clone()],
        "preferredVersion": version,
    })
}

fn image_group() -> Value {
    api_group(GROUP, GROUP_VERSION)
}

fn berth_group() -> Value {
    api_group(webhook_types::GROUP, webhook_types::API_VERSION)
}

/// `GET /version`.
pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0+berth.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// Go's GOARCH names, which clients expect in `platform`.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `GET /api`: APIVersions. `server_address` is the `host:port` clients reach berth at.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            { "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }
        ],
    })
}

/// `GET /api/v1`.
pub fn core_resources() -> Value {
    resource_list("v1", CORE_RESOURCES)
}

/// `GET /apis`: APIGroupList.
pub fn groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [image_group(), berth_group()],
    })
}

/// `GET /apis/image.openshift.io`: APIGroup.
pub fn group() -> Value {
    as_api_group(image_group())
}

fn as_api_group(mut g: Value) -> Value {
    let obj = g.as_object_mut().expect("an APIGroup is an object");
    obj.insert("kind".into(), json!("APIGroup"));
    obj.insert("apiVersion".into(), json!("v1"));
    g
}

/// `GET /apis/berth.io`: APIGroup.
pub fn berth_group_document() -> Value {
    as_api_group(berth_group())
}

/// `GET /apis/berth.io/v1`: APIResourceList.
pub fn berth_group_resources() -> Value {
    resource_list(webhook_types::API_VERSION, BERTH_RESOURCES)
}

/// `GET /apis/image.openshift.io/v1`: APIResourceList.
pub fn group_resources() -> Value {
    resource_list(GROUP_VERSION, IMAGE_RESOURCES)
}

/// The response for a discovery endpoint, or `None` for any other endpoint, so the router
/// can serve all of discovery with one call.
pub fn respond(endpoint: &ApiEndpoint, server_address: &str) -> Option<Response> {
    let doc = match endpoint {
        ApiEndpoint::Version => version(),
        ApiEndpoint::CoreVersions => core_versions(server_address),
        ApiEndpoint::CoreResources => core_resources(),
        ApiEndpoint::Groups => groups(),
        ApiEndpoint::Group => group(),
        ApiEndpoint::GroupResources => group_resources(),
        ApiEndpoint::BerthGroup => berth_group_document(),
        ApiEndpoint::BerthGroupResources => berth_group_resources(),
        _ => return None,
    };
    Some(json(StatusCode::OK, &doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::apis::path;
    use http::Method;

    fn resource<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn group_list_and_group() {
        let g = groups();
        assert_eq!(g["kind"], "APIGroupList");
        let group0 = &g["groups"][0];
        assert_eq!(group0["name"], "image.openshift.io");
        assert_eq!(group0["versions"][0], group0["preferredVersion"]);
        assert_eq!(
            group0["preferredVersion"]["groupVersion"],
            "image.openshift.io/v1"
        );
        let one = group();
        assert_eq!(one["kind"], "APIGroup");
        assert_eq!(one["versions"], group0["versions"]);
    }

    #[test]
    fn resource_list_contents() {
        let l = group_resources();
        assert_eq!(l["kind"], "APIResourceList");
        assert_eq!(l["groupVersion"], "image.openshift.io/v1");
        let is = resource(&l, "imagestreams");
        assert_eq!(
            is,
            &json!({
                "name": "imagestreams", "singularName": "imagestream", "namespaced": true,
                "kind": "ImageStream",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": ["is"], "categories": ["all"]
            })
        );
        let images = resource(&l, "images");
        assert_eq!(images["namespaced"], false);
        assert_eq!(images["kind"], "Image");
        assert_eq!(
            resource(&l, "imagestreamtags")["shortNames"],
            json!(["istag"])
        );
        assert_eq!(
            resource(&l, "imagestreamimages")["shortNames"],
            json!(["isimage"])
        );
        assert_eq!(
            resource(&l, "imagestreammappings")["verbs"],
            json!(["create"])
        );
        assert_eq!(
            resource(&l, "imagestreamimports")["kind"],
            "ImageStreamImport"
        );
        let status = resource(&l, "imagestreams/status");
        assert_eq!(status["kind"], "ImageStream");
        assert_eq!(status["singularName"], "");
        // Every resource has the fields the dynamic client indexes by.
        for r in l["resources"].as_array().unwrap() {
            for key in ["name", "singularName", "namespaced", "kind", "verbs"] {
                assert!(r.get(key).is_some(), "{r} lacks {key}");
            }
        }
    }

    #[test]
    fn berth_group_lists_webhooks() {
        let groups = groups();
        let berth = &groups["groups"][1];
        assert_eq!(berth["name"], "berth.io");
        assert_eq!(berth["preferredVersion"]["groupVersion"], "berth.io/v1");
        assert_eq!(berth["versions"][0], berth["preferredVersion"]);
        let one = berth_group_document();
        assert_eq!(
            (&one["kind"], &one["name"]),
            (&json!("APIGroup"), &json!("berth.io"))
        );
        let l = berth_group_resources();
        assert_eq!(l["groupVersion"], "berth.io/v1");
        assert_eq!(
            resource(&l, "webhooks"),
            &json!({
                "name": "webhooks", "singularName": "webhook", "namespaced": true,
                "kind": "Webhook",
                "verbs": ["create", "delete", "get", "list", "update", "watch"]
            })
        );
    }

    /// Every advertised verb is routed (and nothing advertised answers 404/405).
    #[test]
    fn advertised_verbs_are_routed() {
        let berth = berth_group_resources();
        routed(&group_resources(), "/apis/image.openshift.io/v1");
        routed(&berth, "/apis/berth.io/v1");
    }

    fn routed(l: &Value, prefix: &str) {
        for r in l["resources"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            let namespaced = r["namespaced"].as_bool().unwrap();
            let (plural, sub) = name
                .split_once('/')
                .map_or((name, None), |(p, s)| (p, Some(s)));
            let object = match plural {
                "imagestreamtags" => "app:latest",
                "imagestreamimages" => "app@sha256:abc",
                "images" => "sha256:abc",
                _ => "app",
            };
            let base = if namespaced {
                format!("{prefix}/namespaces/ns/{plural}")
            } else {
                format!("{prefix}/{plural}")
            };
            let item = match sub {
                Some(s) => format!("{base}/{object}/{s}"),
                None => format!("{base}/{object}"),
            };
            for verb in r["verbs"].as_array().unwrap() {
                let (method, target, query) = match verb.as_str().unwrap() {
                    "get" => (Method::GET, &item, None),
                    "list" => (Method::GET, &base, None),
                    "watch" => (Method::GET, &base, Some("watch=true")),
                    "create" if sub.is_none() => (Method::POST, &base, None),
                    "update" => (Method::PUT, &item, None),
                    "patch" => (Method::PATCH, &item, None),
                    "delete" => (Method::DELETE, &item, None),
                    other => panic!("unexpected verb {other} on {name}"),
                };
                assert!(
                    path::parse(&method, target, query).is_ok(),
                    "{name} {verb}: {method} {target}"
                );
            }
        }
    }

    #[test]
    fn core_documents() {
        let v = core_versions("berth.example:5000");
        assert_eq!(v["kind"], "APIVersions");
        assert_eq!(v["versions"], json!(["v1"]));
        assert_eq!(
            v["serverAddressByClientCIDRs"][0]["serverAddress"],
            "berth.example:5000"
        );
        let r = core_resources();
        assert_eq!(r["groupVersion"], "v1");
        assert_eq!(resource(&r, "secrets")["kind"], "Secret");
        assert_eq!(resource(&r, "secrets")["namespaced"], true);
        let ver = version();
        assert_eq!(ver["major"], "1");
        assert!(ver["gitVersion"].as_str().unwrap().starts_with("v1."));
    }

    #[test]
    fn respond_covers_discovery_only() {
        for e in [
            ApiEndpoint::Version,
            ApiEndpoint::CoreVersions,
            ApiEndpoint::CoreResources,
            ApiEndpoint::Groups,
            ApiEndpoint::Group,
            ApiEndpoint::GroupResources,
            ApiEndpoint::BerthGroup,
            ApiEndpoint::BerthGroupResources,
        ] {
            let resp = respond(&e, "h:1").unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
        }
        assert!(respond(
            &ApiEndpoint::GetImage {
                name: "sha256:x".into()
            },
            "h:1"
        )
        .is_none());
    }
}
