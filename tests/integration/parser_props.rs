//! Property tests of every parser that reads what a client sends (issue 13's fuzzing, on
//! stable): arbitrary input never panics, and what is valid by construction is accepted and
//! reads back as built. `fuzz/` runs the same parsers under cargo-fuzz; test.sh's `fuzz`
//! step falls back to these where cargo-fuzz is missing. Any input a fuzzer finds crashing
//! belongs in `regressions` below.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use berth::auth::jwt::{Access, Keys};
use berth::cli::jsonpath::Template;
use berth::http::apis::patch::{
    apply_json_patch, apply_merge_patch, PatchKind, IMAGE_STREAM_MERGE_KEYS,
};
use berth::http::apis::path as api_path;
use berth::http::apis::selector::{FieldSelector, LabelSelector};
use berth::http::auth::{parse_authorization, Authorization};
use berth::http::distribution::chunk_offset;
use berth::http::endpoint::{self, Endpoint};
use berth::http::range::{self, RangeRequest};
use berth::registry::{manifest, Registry};
use berth_storage::fs::FsBlobStore;
use berth_storage::memory::MemoryMetadata;
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use serde_json::{json, Value};

/// 256 cases in the regular suite; test.sh's fuzz fallback asks for more (PROPTEST_CASES).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

/// Paths built from the pieces the parsers look for, so the random ones reach deep branches.
fn path_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("v2".to_string()),
        Just("blobs".to_string()),
        Just("uploads".to_string()),
        Just("manifests".to_string()),
        Just("tags".to_string()),
        Just("list".to_string()),
        Just("referrers".to_string()),
        Just("_catalog".to_string()),
        Just("console".to_string()),
        Just("app.js".to_string()),
        Just("..".to_string()),
        Just("apis".to_string()),
        Just("api".to_string()),
        Just("image.openshift.io".to_string()),
        Just("v1".to_string()),
        Just("namespaces".to_string()),
        Just("imagestreams".to_string()),
        Just("imagestreamtags".to_string()),
        Just("imagestreamimages".to_string()),
        Just("images".to_string()),
        Just("secrets".to_string()),
        Just("status".to_string()),
        Just(String::new()),
        Just(format!("sha256:{}", "a".repeat(64))),
        Just("3f1d1f4e-8b7a-4c1e-9a53-2a6f9d0b1c2d".to_string()),
        "[a-z0-9._:@%-]{0,12}",
        ".{0,6}",
    ];
    proptest::collection::vec(piece, 0..8).prop_map(|p| format!("/{}", p.join("/")))
}

fn name_part() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}([._-][a-z0-9]{1,5}){0,2}"
}

fn namespace() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}"
}

fn hex64() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}"
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
        prop_oneof![Just("/a"), Just("a"), Just("-"), Just("/0"), Just("~1")]
            .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    "[a-z]{1,4}".boxed(),
                    Just("op".to_string()).boxed(),
                    Just("path".to_string()).boxed(),
                    Just("value".to_string()).boxed(),
                    Just("from".to_string()).boxed(),
                    Just("mediaType".to_string()).boxed(),
                    Just("schemaVersion".to_string()).boxed(),
                    Just("config".to_string()).boxed(),
                    Just("layers".to_string()).boxed(),
                    Just("manifests".to_string()).boxed(),
                    Just("digest".to_string()).boxed(),
                    Just("size".to_string()).boxed(),
                    Just("subject".to_string()).boxed(),
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn endpoint_parse_never_panics(m in method(), path in path_like(), query in proptest::option::of(".{0,40}")) {
        let _ = endpoint::parse(&m, &path, query.as_deref());
        let _ = api_path::parse(&m, &path, query.as_deref());
        let _ = api_path::is_api_path(&path);
    }

    #[test]
    fn endpoint_parse_of_any_text_never_panics(m in method(), path in "\\PC{0,80}", query in proptest::option::of("\\PC{0,80}")) {
        let _ = endpoint::parse(&m, &path, query.as_deref());
        let _ = api_path::parse(&m, &path, query.as_deref());
    }

    /// The console serves its named files and nothing else, whatever the path spells.
    #[test]
    fn console_paths_reach_only_named_assets(m in method(), path in path_like()) {
        if let Ok(Endpoint::Console { .. }) = endpoint::parse(&m, &path, None) {
            let named = ["/", "/console", "/console/", "/console/index.html", "/console/app.js",
                         "/console/app.css", "/console/favicon.svg"];
            prop_assert!(named.contains(&path.as_str()), "{path:?} served as a console asset");
            prop_assert!(m == Method::GET || m == Method::HEAD, "{m} {path:?}");
        }
    }

    /// Valid names, tags and digests are accepted, and read back from the parsed endpoint.
    #[test]
    fn endpoint_parse_accepts_valid_requests(ns in namespace(), stream in name_part(), t in tag(), hex in hex64()) {
        let repo = format!("{ns}/{stream}");
        let digest = format!("sha256:{hex}");
        match endpoint::parse(&Method::GET, &format!("/v2/{repo}/manifests/{t}"), None) {
            Ok(Endpoint::GetManifest { repo: r, reference, head: false }) => {
                prop_assert_eq!(r.as_str(), repo.as_str());
                prop_assert_eq!(reference.to_string(), t.clone());
            }
            other => prop_assert!(false, "{other:?}"),
        }
        match endpoint::parse(&Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"), None) {
            Ok(Endpoint::GetBlob { digest: d, head: true, .. }) => prop_assert_eq!(d.to_string(), digest.clone()),
            other => prop_assert!(false, "{other:?}"),
        }
        let put = endpoint::parse(&Method::PUT, &format!("/v2/{repo}/manifests/{digest}"), Some(&format!("tag={t}")));
        prop_assert!(matches!(put, Ok(Endpoint::PutManifest { ref tags, .. }) if tags.len() == 1), "{:?}", put);
        // The same path percent-encoded is never taken for a name.
        let encoded = format!("/v2/{ns}%2F{stream}/manifests/{t}");
        prop_assert!(endpoint::parse(&Method::GET, &encoded, None).is_err());
        let api = api_path::parse(&Method::GET, &format!("/apis/image.openshift.io/v1/namespaces/{ns}/imagestreams/{stream}"), None);
        prop_assert!(matches!(api, Ok(ref e) if e.kind() == "get_imagestream"), "{:?}", api);
    }

    #[test]
    fn manifest_parse_never_panics(ct in proptest::option::of(".{0,60}"), body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = manifest::parse(ct.as_deref(), &body);
    }

    #[test]
    fn manifest_parse_of_json_shapes_never_panics(ct in proptest::option::of(prop_oneof![
        Just(manifest::oci_manifest()), Just(manifest::oci_index()),
        Just("application/vnd.docker.distribution.manifest.v2+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.list.v2+json".to_string()),
    ]), doc in json_value()) {
        let body = serde_json::to_vec(&doc).unwrap();
        if let Ok(m) = manifest::parse(ct.as_deref(), &body) {
            let _ = m.required_blobs().count();
            let _ = m.effective_artifact_type();
        }
    }

    /// A manifest built from valid descriptors is accepted and names exactly those blobs.
    #[test]
    fn manifest_parse_accepts_valid_images(config in hex64(), layers in proptest::collection::vec((hex64(), 0u64..1 << 40), 0..6)) {
        let doc = json!({
            "schemaVersion": 2,
            "mediaType": manifest::oci_manifest(),
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config}"), "size": 7},
            "layers": layers.iter().map(|(h, size)| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{h}"), "size": size,
            })).collect::<Vec<_>>(),
        });
        let m = manifest::parse(Some(&manifest::oci_manifest()), &serde_json::to_vec(&doc).unwrap()).unwrap();
        let blobs: Vec<String> = m.required_blobs().map(|d| d.digest.hex().to_string()).collect();
        let mut expected = vec![config];
        expected.extend(layers.into_iter().map(|(h, _)| h));
        prop_assert_eq!(blobs, expected);
    }

    #[test]
    fn range_parse_stays_within_the_blob(header in proptest::option::of(prop_oneof![
        "bytes=[0-9]{0,20}-[0-9]{0,20}".boxed(),
        "bytes= ?-?[0-9]{0,4}(,[0-9]{0,3}-[0-9]{0,3})?".boxed(),
        "\\PC{0,30}".boxed(),
    ]), size in prop_oneof![Just(0u64), 1u64..5000, Just(u64::MAX)]) {
        match range::parse(header.as_deref(), size) {
            RangeRequest::Partial(r) => prop_assert!(r.start < r.end && r.end <= size, "{r:?} of {size}"),
            RangeRequest::Full | RangeRequest::Unsatisfiable => {}
        }
    }

    #[test]
    fn range_parse_serves_what_was_asked(size in 1u64..1 << 40, a in any::<u64>(), len in 1u64..1 << 20) {
        let a = a % size;
        let b = a.saturating_add(len - 1);
        let got = range::parse(Some(&format!("bytes={a}-{b}")), size);
        prop_assert_eq!(got, RangeRequest::Partial(a..(b + 1).min(size)));
        let got = range::parse(Some(&format!("bytes=-{len}")), size);
        prop_assert_eq!(got, RangeRequest::Partial(size.saturating_sub(len)..size));
    }

    #[test]
    fn content_range_never_panics(value in "\\PC{0,40}", length in proptest::option::of("[0-9]{0,22}")) {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(http::header::CONTENT_RANGE, v);
        }
        if let Some(l) = length {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_str(&l).unwrap());
        }
        let _ = chunk_offset(&headers);
    }

    #[test]
    fn content_range_reads_back(first in any::<u64>(), len in 1u64..1 << 30) {
        let last = first.saturating_add(len - 1);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_RANGE, HeaderValue::from_str(&format!("{first}-{last}")).unwrap());
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from_str(&(last - first + 1).to_string()).unwrap());
        prop_assert_eq!(chunk_offset(&headers).unwrap(), Some(first));
    }

    #[test]
    fn label_selector_never_panics_and_round_trips(s in prop_oneof![
        "\\PC{0,40}".boxed(),
        "([a-z!]{0,5}( ?(=|==|!=| in | notin ) ?(\\(?[a-z0-9,]{0,8}\\)?))?,?){0,4}".boxed(),
    ], labels in proptest::collection::btree_map("[a-z]{1,3}", "[a-z0-9]{0,3}", 0..4)) {
        if let Ok(sel) = LabelSelector::parse(&s) {
            let _ = sel.matches(&labels);
            let again = LabelSelector::parse(&sel.to_string());
            prop_assert_eq!(again.as_ref(), Ok(&sel), "{} -> {}", s, sel);
        }
        if let Ok(sel) = FieldSelector::parse(&s) {
            let _ = sel.matches("a", Some("b"));
            let _ = FieldSelector::parse(&sel.to_string());
        }
    }

    /// A selector built from valid requirements is accepted and matches as the rules say.
    #[test]
    fn label_selector_accepts_valid_requirements(key in "[a-z]([a-z0-9-]{0,8}[a-z0-9])?", value in "[a-z0-9]{1,8}", other in "[a-z0-9]{1,8}") {
        let sel = LabelSelector::parse(&format!("{key}={value}")).unwrap();
        let labels = |v: &str| BTreeMap::from([(key.clone(), v.to_string())]);
        prop_assert!(sel.matches(&labels(&value)));
        prop_assert_eq!(sel.matches(&labels(&other)), other == value);
        let sel = LabelSelector::parse(&format!("{key} notin ({value}),!missing")).unwrap();
        prop_assert_eq!(sel.matches(&labels(&other)), other != value);
    }

    #[test]
    fn jsonpath_never_panics(template in prop_oneof![
        "\\PC{0,40}".boxed(),
        "(\\{(\\.|\\[|\\]|\\*|[a-z]|[0-9]|range|end|\"|'|@|\\?|==|\\(|\\)| ){0,12}\\}|[a-z ]{0,4}){0,4}".boxed(),
    ], doc in json_value()) {
        if let Ok(t) = Template::parse(&template) {
            let _ = t.render(&doc);
        }
    }

    #[test]
    fn merge_patch_never_panics_and_is_idempotent(mut target in json_value(), patch in json_value()) {
        apply_merge_patch(&mut target, &patch);
        let once = target.clone();
        apply_merge_patch(&mut target, &patch);
        prop_assert_eq!(target, once);
    }

    #[test]
    fn json_patch_never_panics(target in json_value(), patch in json_value(), body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut t = target.clone();
        let before = t.clone();
        if apply_json_patch(&mut t, patch).is_err() {
            prop_assert_eq!(t, before, "a failed JSON patch changed its target");
        }
        for kind in [PatchKind::Merge, PatchKind::Json, PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS)] {
            let mut t = target.clone();
            if kind.apply(&mut t, &body).is_err() {
                prop_assert_eq!(&t, &target);
            }
        }
    }

    /// Strategic merge patches of arbitrary shape (tag lists included, with directives): no
    /// panic, and a refused one leaves the stream as it was.
    #[test]
    fn strategic_merge_patch_never_panics(target in json_value(), tags in proptest::collection::vec(json_value(), 0..4), extra in json_value()) {
        let smp = PatchKind::Strategic(IMAGE_STREAM_MERGE_KEYS);
        let mut items: Vec<serde_json::Value> = tags;
        items.push(serde_json::json!({"name": "a", "$patch": "delete"}));
        items.push(serde_json::json!({"$patch": "replace"}));
        let patch = serde_json::json!({"spec": {"tags": items, "x": extra},
                                       "status": {"tags": [{"tag": "t"}]}});
        let mut t = target.clone();
        if smp.apply(&mut t, patch.to_string().as_bytes()).is_err() {
            prop_assert_eq!(&t, &target);
        }
    }

    #[test]
    fn authorization_never_panics(value in prop_oneof![
        "\\PC{0,60}".boxed(),
        "(Basic|basic|BEARER|Bearer|Negotiate)( {0,2})[A-Za-z0-9+/=:. -]{0,40}".boxed(),
    ]) {
        let _ = parse_authorization(&value);
        let _ = Access::parse_scopes(&value);
    }

    /// Basic credentials read back exactly, whatever the password holds (colons included).
    #[test]
    fn authorization_reads_back_basic_and_bearer(name in "[^:\\x00]{0,20}", password in "\\PC{0,30}", token in "[A-Za-z0-9._-]{1,60}") {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
        let basic = format!("Basic {encoded}");
        prop_assert_eq!(
            parse_authorization(&basic),
            Authorization::Basic { name: name.clone(), password: password.clone() }
        );
        let bearer = format!("bearer  {token} ");
        prop_assert_eq!(parse_authorization(&bearer), Authorization::Bearer(&token));
    }

    #[test]
    fn scopes_read_back(scopes in proptest::collection::vec(
        (prop_oneof![Just("repository"), Just("registry")], "[a-z0-9]{1,6}(/[a-z0-9]{1,6}){0,2}(:[0-9]{2,5})?", proptest::collection::vec(prop_oneof![Just("pull"), Just("push"), Just("*"), Just("delete")], 1..3)),
        1..4,
    )) {
        let text = scopes.iter().map(|(k, n, a)| format!("{k}:{n}:{}", a.join(","))).collect::<Vec<_>>().join(" ");
        let parsed = Access::parse_scopes(&text);
        prop_assert_eq!(parsed.len(), scopes.len());
        for (p, (k, n, a)) in parsed.iter().zip(&scopes) {
            prop_assert_eq!(&p.kind, k);
            prop_assert_eq!(&p.name, n);
            prop_assert_eq!(&p.actions, a);
        }
    }
}

/// Registry tokens: arbitrary text is never accepted, and issued tokens verify, for their
/// audience only.
#[test]
fn docker_tokens_verify_only_when_issued() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new(
        Arc::new(MemoryMetadata::new()),
        Arc::new(FsBlobStore::open(dir.path()).unwrap()),
        Default::default(),
        "localhost".into(),
    )
    .unwrap();
    let keys = Keys::load_or_create(&registry).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(config());
    runner
        .run(
            &(
                prop_oneof![
                    "\\PC{0,120}".boxed(),
                    "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,43}".boxed(),
                ],
                "[a-z]{1,10}",
            ),
            |(token, sub)| {
                prop_assert!(keys.verify(&token, "berth").is_none());
                let access = Access::parse_scopes(&format!("repository:{sub}/x:pull"));
                let issued = keys.issue(&sub, "berth", access.clone(), 60).unwrap();
                let claims = keys
                    .verify(&issued, "berth")
                    .expect("an issued token verifies");
                prop_assert_eq!(claims.sub, sub);
                prop_assert_eq!(claims.access, access);
                prop_assert!(keys.verify(&issued, "elsewhere").is_none());
                // One character changed anywhere: refused.
                let mut tampered = issued.into_bytes();
                let i = tampered.len() / 2;
                tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
                prop_assert!(keys
                    .verify(&String::from_utf8(tampered).unwrap(), "berth")
                    .is_none());
                Ok(())
            },
        )
        .unwrap();
}

/// Inputs that once crashed a parser (from fuzzing or the properties above) stay fixed.
#[test]
fn regressions() {
    // A field selector with a character of several bytes sliced a str inside it.
    for s in [
        "\u{10523}",
        "metadata.name=\u{e9}t\u{e9}",
        "\\\u{e9}=x",
        "a\u{1f574}!=b",
    ] {
        let _ = FieldSelector::parse(s);
    }
    // `a in (,)` is the set holding the empty value; it printed as `a in ()`, which is refused.
    let sel = LabelSelector::parse("a in (,)").unwrap();
    assert_eq!(LabelSelector::parse(&sel.to_string()), Ok(sel));
    assert_eq!(
        FieldSelector::parse("metadata.name=\u{e9}t\u{e9}")
            .unwrap()
            .exact_name(),
        Some("\u{e9}t\u{e9}")
    );
}
