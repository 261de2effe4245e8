//! New suite (2026) data sets. Each data set is pushed (blobs, then
//! manifests), listed, HEADed, pulled, queried for referrers and deleted
//! (tags, then manifests in reverse push order, then blobs). Also the
//! bad-digest image and the manifest error cases.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::client::{Resp, R};
use crate::data::{
    self, base64, image_config, layer_tar, layer_targz, platform_descriptor, Algo, Blob,
    IndexBuilder, ManifestBuilder, Rng, ACCEPT_MANIFESTS, MT_LAYER_NONDIST, MT_LAYER_NONDIST_TAR,
};
use crate::ops::{self, Ctx};
use crate::runner::{case, ensure, Case, Reporter, Soft};

/// A manifest of a data set, with the tags it is pushed under and the
/// subject digest it refers to.
struct Manifest {
    m: Blob,
    tags: Vec<String>,
    subject: Option<String>,
}

struct Dataset {
    name: &'static str,
    /// Blobs to push (non-distributable layers are deliberately absent).
    blobs: Vec<Blob>,
    /// Manifests in push order.
    manifests: Vec<Manifest>,
}

impl Dataset {
    fn new(name: &'static str) -> Self {
        Dataset {
            name,
            blobs: Vec::new(),
            manifests: Vec::new(),
        }
    }

    fn blob(&mut self, b: &Blob) {
        self.blobs.push(b.clone());
    }

    /// Adds a manifest pushed by digest.
    fn manifest(&mut self, m: &Blob) {
        self.tagged(m, &[]);
    }

    /// Adds a manifest pushed under each of `tags` (by digest when none).
    fn tagged(&mut self, m: &Blob, tags: &[&str]) {
        let v: Value = serde_json::from_slice(&m.bytes).unwrap_or(Value::Null);
        self.manifests.push(Manifest {
            m: m.clone(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            subject: v["subject"]["digest"].as_str().map(str::to_string),
        });
    }

    fn tags(&self) -> Vec<&str> {
        self.manifests
            .iter()
            .flat_map(|m| m.tags.iter().map(String::as_str))
            .collect()
    }

    fn subjects(&self) -> BTreeSet<&str> {
        self.manifests
            .iter()
            .filter_map(|m| m.subject.as_deref())
            .collect()
    }
}

struct State {
    repo: String,
    ds: Dataset,
}

pub fn run(ctx: &Ctx, rep: &mut Reporter) {
    let mut rng = ctx.rng("datasets");
    let repo = ctx.repo("datasets");
    for ds in build_all(&mut rng) {
        let prefix = format!("dataset/{}", ds.name);
        let too_large = ctx
            .max_manifest_bytes
            .is_some_and(|max| ds.manifests.iter().any(|m| m.m.bytes.len() > max));
        let cases = if too_large {
            vec![case("push above the manifest limit -> 413", push_too_large)]
        } else {
            dataset_cases(&ds)
        };
        let mut st = State {
            repo: repo.clone(),
            ds,
        };
        rep.run(ctx, &prefix, &mut st, cases);
    }
    let mut st = BadImage::new(&mut rng, repo.clone());
    rep.run(ctx, "dataset/bad-digest-image", &mut st, bad_image_cases());
    let mut st = repo;
    rep.run(ctx, "manifest-errors", &mut st, manifest_error_cases());
}

fn dataset_cases(ds: &Dataset) -> Vec<Case<State>> {
    let mut cases = vec![case("push", push)];
    if !ds.tags().is_empty() {
        cases.push(case("tags list with ?last=", tag_list));
    }
    cases.push(case("HEAD manifests", head));
    cases.push(case("pull manifests and blobs", pull));
    if !ds.subjects().is_empty() {
        cases.push(case("referrers with artifactType filter", referrers));
    }
    cases.push(case("delete tags, manifests and blobs -> 202", delete));
    cases
}

// ------------------------------------------------------------------ cases

fn push(ctx: &Ctx, s: &mut State) -> R {
    for b in &s.ds.blobs {
        ops::push_blob(ctx, &s.repo, b)?;
    }
    // Go on after a failed check so the later cases still have manifests.
    let mut soft = Soft::default();
    for man in &s.ds.manifests {
        if man.tags.is_empty() {
            let d = &man.m.digest;
            let r = ops::put_manifest(ctx, &s.repo, d, &man.m);
            soft.check(r.and_then(|r| check_put(ctx, &r, man)));
        }
        for tag in &man.tags {
            let r = ops::put_manifest(ctx, &s.repo, tag, &man.m);
            soft.check(r.and_then(|r| check_put(ctx, &r, man)));
        }
    }
    soft.finish()
}

/// `OCI-Subject` when there is a subject; the Location serves the manifest.
/// A dataset with a manifest over the registry's limit: that manifest is refused with 413
/// (the distribution spec's answer to an oversized manifest) and stored under none of its tags.
fn push_too_large(ctx: &Ctx, s: &mut State) -> R {
    let max = ctx.max_manifest_bytes.unwrap_or(usize::MAX);
    for b in &s.ds.blobs {
        ops::push_blob(ctx, &s.repo, b)?;
    }
    for man in &s.ds.manifests {
        let refs: Vec<&str> = if man.tags.is_empty() {
            vec![man.m.digest.as_str()]
        } else {
            man.tags.iter().map(String::as_str).collect()
        };
        for reference in refs {
            if man.m.bytes.len() <= max {
                ops::put_manifest(ctx, &s.repo, reference, &man.m)?;
                continue;
            }
            let r = ctx
                .client
                .put(&ctx.manifest_url(&s.repo, reference))
                .header("Content-Type", &man.m.media_type)
                .body(man.m.bytes.clone())
                .send()?;
            r.expect(&[413])?;
            let r = ctx
                .client
                .head(&ctx.manifest_url(&s.repo, reference))
                .send()?;
            r.expect(&[404])?;
        }
    }
    Ok(())
}

fn check_put(ctx: &Ctx, r: &Resp, man: &Manifest) -> R {
    if let Some(subject) = &man.subject {
        r.header_eq("OCI-Subject", subject)?;
    }
    let loc = r.location(&ctx.client)?;
    ops::get_manifest_url(ctx, &loc, &man.m, None)
}

fn tag_list(ctx: &Ctx, s: &mut State) -> R {
    let mut mine: Vec<&str> = s.ds.tags();
    mine.sort_unstable();
    let (r, tags) = ops::list_tags(ctx, &s.repo, "")?;
    for t in &mine {
        ensure(tags.iter().any(|x| x == t), || {
            format!("{}: tag {t} missing from {tags:?}", r.what)
        })?;
    }
    ops::check_tag_order(&r.what, &tags)?;
    let mid = mine[mine.len() / 2];
    let (r, tags) = ops::list_tags(ctx, &s.repo, &format!("last={mid}"))?;
    for t in &mine {
        let listed = tags.iter().any(|x| x == t);
        let want = *t > mid;
        ensure(listed == want, || {
            format!(
                "{}: tag {t} {} with last={mid}: {tags:?}",
                r.what,
                if listed { "listed" } else { "not listed" }
            )
        })?;
    }
    Ok(())
}

fn head(ctx: &Ctx, s: &mut State) -> R {
    for man in &s.ds.manifests {
        ops::head_manifest(ctx, &s.repo, &man.m.digest, &man.m)?;
        for tag in &man.tags {
            ops::head_manifest(ctx, &s.repo, tag, &man.m)?;
        }
    }
    Ok(())
}

fn pull(ctx: &Ctx, s: &mut State) -> R {
    for man in &s.ds.manifests {
        ops::get_manifest(ctx, &s.repo, &man.m.digest, &man.m)?;
        for tag in &man.tags {
            ops::get_manifest(ctx, &s.repo, tag, &man.m)?;
        }
    }
    for b in &s.ds.blobs {
        ops::verify_blob(ctx, &s.repo, &b.digest, &b.bytes)?;
    }
    Ok(())
}

fn referrers(ctx: &Ctx, s: &mut State) -> R {
    for subject in s.ds.subjects() {
        let want: Vec<&Blob> =
            s.ds.manifests
                .iter()
                .filter(|m| m.subject.as_deref() == Some(subject))
                .map(|m| &m.m)
                .collect();
        let (r, list) = ops::referrers(ctx, &s.repo, subject, "")?;
        ops::check_referrers(&r.what, &list, &want)?;
        let types: BTreeSet<String> = want
            .iter()
            .filter_map(|m| {
                ops::expected_referrer(m)["artifactType"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        for t in types {
            let subset: Vec<&Blob> = want
                .iter()
                .copied()
                .filter(|m| ops::expected_referrer(m)["artifactType"] == t.as_str())
                .collect();
            let q = format!("artifactType={}", ops::query_escape(&t));
            let (r, list) = ops::referrers(ctx, &s.repo, subject, &q)?;
            r.header_eq("OCI-Filters-Applied", "artifactType")?;
            ops::check_referrers(&r.what, &list, &subset)?;
        }
    }
    Ok(())
}

fn delete(ctx: &Ctx, s: &mut State) -> R {
    // Delete all that can be deleted, reporting every failure.
    let mut soft = Soft::default();
    for man in &s.ds.manifests {
        for tag in &man.tags {
            let deleted = ops::delete_manifest(ctx, &s.repo, tag);
            let ok = deleted.is_ok();
            soft.check(deleted);
            if ok {
                soft.check(ops::expect_manifest_missing(ctx, &s.repo, tag));
            }
        }
    }
    for man in s.ds.manifests.iter().rev() {
        let d = &man.m.digest;
        // Deleting its tags left the manifest in place.
        soft.check(ops::get_manifest(ctx, &s.repo, d, &man.m));
        soft.check(ops::delete_manifest(ctx, &s.repo, d));
        soft.check(ops::expect_manifest_missing(ctx, &s.repo, d));
    }
    for b in &s.ds.blobs {
        soft.check(ops::delete_blob(ctx, &s.repo, &b.digest));
    }
    soft.finish()
}

// -------------------------------------------------------------- data sets

const ART_TYPE: &str = "application/vnd.example.berth.artifact";
const ART_FILE: &str = "application/vnd.example.berth.file";
const SIG_TYPE: &str = "application/vnd.example.berth.signature";
const SBOM_TYPE: &str = "application/vnd.example.berth.sbom+json";

/// A config and one tar.gz layer, pushed, and the image manifest.
fn simple_image(rng: &mut Rng, ds: &mut Dataset) -> Blob {
    let (layer, diff) = layer_targz(rng, "file.txt");
    let config = image_config(rng, &[diff]);
    ds.blob(&config);
    ds.blob(&layer);
    ManifestBuilder::new(config.descriptor(), vec![layer.descriptor()]).build()
}

fn build_all(rng: &mut Rng) -> Vec<Dataset> {
    let mut all = Vec::new();

    // image: two gzip layers, three tags.
    let mut ds = Dataset::new("image");
    let (l1, d1) = layer_targz(rng, "one.txt");
    let (l2, d2) = layer_targz(rng, "two.txt");
    let config = image_config(rng, &[d1, d2]);
    for b in [&config, &l1, &l2] {
        ds.blob(b);
    }
    let m =
        ManifestBuilder::new(config.descriptor(), vec![l1.descriptor(), l2.descriptor()]).build();
    ds.tagged(&m, &["image-a", "image-b", "image-c"]);
    all.push(ds);

    // image-uncompressed: a plain tar layer.
    let mut ds = Dataset::new("image-uncompressed");
    let (l, d) = layer_tar(rng, "plain.txt");
    let config = image_config(rng, &[d]);
    ds.blob(&config);
    ds.blob(&l);
    let m = ManifestBuilder::new(config.descriptor(), vec![l.descriptor()]).build();
    ds.tagged(&m, &["uncompressed"]);
    all.push(ds);

    // large-manifest: 390 annotations of 10,000 bytes (~3.9 MB < 4 MiB).
    let mut ds = Dataset::new("large-manifest");
    let (l, d) = layer_targz(rng, "large.txt");
    let config = image_config(rng, &[d]);
    ds.blob(&config);
    ds.blob(&l);
    let mut b = ManifestBuilder::new(config.descriptor(), vec![l.descriptor()]);
    for i in 0..390 {
        b = b.annotation(
            &format!("org.example.berth.large.{i:03}"),
            &rng.alnum(10_000),
        );
    }
    let m = b.build();
    debug_assert!(m.bytes.len() > 3_900_000 && m.bytes.len() < 4 << 20);
    ds.tagged(&m, &["large"]);
    all.push(ds);

    // index: two platform images.
    let mut ds = Dataset::new("index");
    let amd = simple_image(rng, &mut ds);
    let arm = simple_image(rng, &mut ds);
    ds.manifest(&amd);
    ds.manifest(&arm);
    let idx = IndexBuilder::new(vec![
        platform_descriptor(&amd, "amd64"),
        platform_descriptor(&arm, "arm64"),
    ])
    .build();
    ds.tagged(&idx, &["index"]);
    all.push(ds);

    // nested-index: an index listing an index.
    let mut ds = Dataset::new("nested-index");
    let img = simple_image(rng, &mut ds);
    ds.manifest(&img);
    let inner = IndexBuilder::new(vec![platform_descriptor(&img, "amd64")]).build();
    ds.manifest(&inner);
    let outer = IndexBuilder::new(vec![inner.descriptor()]).build();
    ds.tagged(&outer, &["nested"]);
    all.push(ds);

    // empty-index: no manifests at all.
    let mut ds = Dataset::new("empty-index");
    let idx = IndexBuilder::new(vec![])
        .annotation("org.example.berth.note", &rng.alnum(8))
        .build();
    ds.tagged(&idx, &["empty-index"]);
    all.push(ds);

    // artifact: artifactType, empty config, one file layer.
    let mut ds = Dataset::new("artifact");
    let empty = data::empty_json();
    let file = Blob::new(ART_FILE, rng.bytes(300));
    ds.blob(&empty);
    ds.blob(&file);
    let art = ManifestBuilder::new(empty.descriptor(), vec![file.descriptor()])
        .artifact_type(ART_TYPE)
        .build();
    ds.tagged(&art, &["artifact"]);
    all.push(ds);

    // artifact-index: an index with an artifactType listing an artifact.
    let mut ds = Dataset::new("artifact-index");
    let file = Blob::new(ART_FILE, rng.bytes(300));
    ds.blob(&empty);
    ds.blob(&file);
    let art = ManifestBuilder::new(empty.descriptor(), vec![file.descriptor()])
        .artifact_type(ART_TYPE)
        .build();
    ds.manifest(&art);
    let idx = IndexBuilder::new(vec![art.descriptor()])
        .artifact_type(ART_TYPE)
        .build();
    ds.tagged(&idx, &["artifact-index"]);
    all.push(ds);

    // artifact-without-layers: the empty descriptor as its only layer.
    let mut ds = Dataset::new("artifact-without-layers");
    ds.blob(&empty);
    let art = ManifestBuilder::new(empty.descriptor(), vec![empty.descriptor()])
        .artifact_type(ART_TYPE)
        .annotation("org.example.berth.note", &rng.alnum(8))
        .build();
    ds.tagged(&art, &["artifact-no-layers"]);
    all.push(ds);

    // artifacts-with-subject: an image and two artifacts of different types.
    let mut ds = Dataset::new("artifacts-with-subject");
    let img = simple_image(rng, &mut ds);
    ds.tagged(&img, &["subject"]);
    ds.blob(&empty);
    let sig = Blob::new(ART_FILE, rng.bytes(128));
    let sbom = Blob::new(ART_FILE, rng.bytes(256));
    ds.blob(&sig);
    ds.blob(&sbom);
    for (t, b, note) in [(SIG_TYPE, &sig, "signature"), (SBOM_TYPE, &sbom, "sbom")] {
        let art = ManifestBuilder::new(empty.descriptor(), vec![b.descriptor()])
            .artifact_type(t)
            .subject(img.descriptor())
            .annotation("org.example.berth.kind", note)
            .annotation("org.opencontainers.image.created", "2026-01-01T00:00:00Z")
            .build();
        ds.manifest(&art);
    }
    all.push(ds);

    // index-with-subject: an index without artifactType whose subject is an image.
    let mut ds = Dataset::new("index-with-subject");
    let img = simple_image(rng, &mut ds);
    ds.manifest(&img);
    let other = simple_image(rng, &mut ds);
    ds.manifest(&other);
    let idx = IndexBuilder::new(vec![platform_descriptor(&other, "amd64")])
        .subject(img.descriptor())
        .annotation("org.example.berth.kind", "index-referrer")
        .build();
    ds.manifest(&idx);
    all.push(ds);

    // missing-subject: the subject is never pushed.
    let mut ds = Dataset::new("missing-subject");
    let mut scratch = Dataset::new("scratch");
    let absent = simple_image(rng, &mut scratch);
    ds.blob(&empty);
    let file = Blob::new(ART_FILE, rng.bytes(64));
    ds.blob(&file);
    let art = ManifestBuilder::new(empty.descriptor(), vec![file.descriptor()])
        .artifact_type(SIG_TYPE)
        .subject(absent.descriptor())
        .build();
    ds.manifest(&art);
    all.push(ds);

    // data-field: the config descriptor embeds its content.
    let mut ds = Dataset::new("data-field");
    let (l, d) = layer_targz(rng, "data.txt");
    let config = image_config(rng, &[d]);
    ds.blob(&config);
    ds.blob(&l);
    let mut cd = config.descriptor();
    cd["data"] = json!(base64(&config.bytes));
    let m = ManifestBuilder::new(cd, vec![l.descriptor()]).build();
    ds.tagged(&m, &["data-field"]);
    all.push(ds);

    // non-distributable-layers: two foreign layers with urls, never pushed.
    let mut ds = Dataset::new("non-distributable-layers");
    let foreign: Vec<Value> = [MT_LAYER_NONDIST, MT_LAYER_NONDIST_TAR]
        .iter()
        .map(|mt| {
            let mut d = Blob::new(mt, rng.bytes(1000)).descriptor();
            d["urls"] = json!([format!("https://example.invalid/layers/{}", rng.alnum(12))]);
            d
        })
        .collect();
    let config = image_config(rng, &[]);
    ds.blob(&config);
    let m = ManifestBuilder::new(config.descriptor(), foreign).build();
    ds.tagged(&m, &["non-distributable"]);
    all.push(ds);

    // custom-fields: unknown fields at the top and in descriptors.
    let mut ds = Dataset::new("custom-fields");
    let (l, d) = layer_targz(rng, "custom.txt");
    let config = image_config(rng, &[d]);
    ds.blob(&config);
    ds.blob(&l);
    let mut cd = config.descriptor();
    cd["org.example.berth.custom"] = json!({"nested": [1, 2, 3], "flag": true});
    let mut ld = l.descriptor();
    ld["x-custom"] = json!(rng.alnum(10));
    let m = ManifestBuilder::new(cd, vec![ld])
        .field("org.example.berth.top", json!({"k": rng.alnum(10)}))
        .field("zzLast", json!(null))
        .annotation("org.example.berth.note", "custom")
        .build();
    ds.tagged(&m, &["custom-fields"]);
    all.push(ds);

    // no-layers: an image manifest with an empty layer list.
    let mut ds = Dataset::new("no-layers");
    let config = image_config(rng, &[]);
    ds.blob(&config);
    let m = ManifestBuilder::new(config.descriptor(), vec![]).build();
    ds.tagged(&m, &["no-layers"]);
    all.push(ds);

    // sha512: blobs, manifest and index all addressed by sha512, pushed by digest.
    let mut ds = Dataset::new("sha512");
    let (l, d) = layer_targz(rng, "sha512.txt");
    let l = Blob::with_algo(&l.media_type, l.bytes, Algo::Sha512);
    let c = image_config(rng, &[d]);
    let c = Blob::with_algo(&c.media_type, c.bytes, Algo::Sha512);
    ds.blob(&c);
    ds.blob(&l);
    let m = ManifestBuilder::new(c.descriptor(), vec![l.descriptor()]).build_algo(Algo::Sha512);
    ds.manifest(&m);
    let idx = IndexBuilder::new(vec![platform_descriptor(&m, "amd64")]).build_algo(Algo::Sha512);
    ds.manifest(&idx);
    all.push(ds);

    all
}

// ------------------------------------------------------- bad-digest image

struct BadImage {
    repo: String,
    blobs: Vec<Blob>,
    /// The manifest as digested, and the body actually sent (two trailing spaces).
    m: Blob,
    body: Vec<u8>,
}

impl BadImage {
    fn new(rng: &mut Rng, repo: String) -> Self {
        let mut ds = Dataset::new("bad-digest-image");
        let m = simple_image(rng, &mut ds);
        let mut body = m.bytes.clone();
        body.extend_from_slice(b"  ");
        BadImage {
            repo,
            blobs: ds.blobs,
            m,
            body,
        }
    }
}

fn bad_image_cases() -> Vec<Case<BadImage>> {
    vec![
        case("setup push blobs", |ctx, s: &mut BadImage| {
            for b in &s.blobs {
                ops::push_blob(ctx, &s.repo, b)?;
            }
            Ok(())
        }),
        case(
            "PUT body with trailing spaces by digest -> 400",
            |ctx, s: &mut BadImage| {
                let r = ctx
                    .client
                    .put(&ctx.manifest_url(&s.repo, &s.m.digest))
                    .header("Content-Type", &s.m.media_type)
                    .body(s.body.clone())
                    .send()?;
                r.expect(&[400]).map(drop)
            },
        ),
        case("GET it -> 404", |ctx, s: &mut BadImage| {
            ops::expect_manifest_missing(ctx, &s.repo, &s.m.digest)
        }),
        case("teardown delete blobs", |ctx, s: &mut BadImage| {
            for b in &s.blobs {
                ops::delete_blob(ctx, &s.repo, &b.digest)?;
            }
            Ok(())
        }),
    ]
}

// -------------------------------------------------------- manifest errors

fn manifest_error_cases() -> Vec<Case<String>> {
    vec![
        case(
            "GET missing manifest by digest -> 404",
            |ctx, repo: &mut String| {
                let d = ops::unknown_digest(&mut ctx.rng("manifest-errors"), Algo::Sha256);
                ops::expect_manifest_missing(ctx, repo, &d)
            },
        ),
        case(
            "GET missing manifest by tag -> 404",
            |ctx, repo: &mut String| ops::expect_manifest_missing(ctx, repo, "no-such-tag"),
        ),
        case(
            "PUT manifests/sha256-baddigeststring -> 400",
            |ctx, repo: &mut String| {
                let empty = data::empty_json();
                ops::push_blob(ctx, repo, &empty)?;
                let m = ManifestBuilder::new(empty.descriptor(), vec![]).build();
                let r = ctx
                    .client
                    .put(&ctx.manifest_url(repo, "sha256:baddigeststring"))
                    .header("Content-Type", &m.media_type)
                    .body(m.bytes.clone())
                    .send()?;
                let result = r.expect(&[400]).map(drop);
                ops::delete_blob(ctx, repo, &empty.digest)?;
                result
            },
        ),
        case(
            "PUT a manifest over 4 MiB -> 413",
            |ctx, repo: &mut String| oversized_manifest(ctx, repo),
        ),
        case(
            "GET manifests/sha256-baddigeststring -> 400 or 404",
            |ctx, repo: &mut String| {
                let r = ctx
                    .client
                    .get(&ctx.manifest_url(repo, "sha256:baddigeststring"))
                    .header("Accept", ACCEPT_MANIFESTS)
                    .send()?;
                r.expect(&[400, 404]).map(drop)
            },
        ),
    ]
}

/// A manifest just over the 4 MiB limit → 413. Sent with `Connection: close`
/// so that a registry which stops reading the body cannot leave a broken
/// connection in the client's pool for the next case.
fn oversized_manifest(ctx: &Ctx, repo: &str) -> R {
    let empty = data::empty_json();
    ops::push_blob(ctx, repo, &empty)?;
    let m = ManifestBuilder::new(empty.descriptor(), vec![])
        .annotation(
            "org.example.berth.padding",
            &ctx.rng("oversized").alnum((4 << 20) + 1024),
        )
        .build();
    let sent = ctx
        .client
        .put(&ctx.manifest_url(repo, &m.digest))
        .header("Content-Type", &m.media_type)
        .header("Connection", "close")
        .body(m.bytes.clone())
        .send()
        .map_err(|e| {
            format!(
                "{e} (the registry closed the connection before reading the whole body, \
                 so its answer was lost: it should drain the body, or close lingeringly \
                 after answering with `Connection: close`)"
            )
        });
    let result = sent.and_then(|r| {
        if r.status == 201 {
            let _ = ops::delete_manifest(ctx, repo, &m.digest);
        }
        r.expect(&[413]).map(drop)
    });
    ops::delete_blob(ctx, repo, &empty.digest)?;
    result
}
