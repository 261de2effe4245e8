//! Legacy suite, content discovery (`03_discovery_test.go`, with the
//! upper-case tags and the fixed `last` check of main): tag listing,
//! pagination and the referrers API. Also the new suite's empty-repository
//! checks.

use serde_json::json;

use crate::client::R;
use crate::data::{self, Algo, Blob, IndexBuilder, LegacyData, ManifestBuilder, EMPTY_JSON_DIGEST};
use crate::ops::{self, Ctx};
use crate::runner::{case, ensure, need, Case, Reporter, Soft};

const BAGEL: &str = "application/vnd.nhl.peanut.butter.bagel";
const FOOD_STAND: &str = "application/vnd.food.stand";
const OTHER: &str = "application/vnd.example.berth.other";
const ANNOTATION: &str = "org.opencontainers.conformance.test";

const TAGS: [&str; 8] = [
    "test0", "test1", "test2", "test3", "TEST0", "TEST1", "TEST2", "TEST3",
];

/// Referrer artifacts; `a_config`..`b_layer` refer to manifest 4, `c` to
/// manifest 3, which is not pushed during this workflow.
struct Artifacts {
    a_config: Blob,
    a_layer: Blob,
    index: Blob,
    b_config: Blob,
    b_layer: Blob,
    c: Blob,
}

impl Artifacts {
    fn new(d: &LegacyData) -> Self {
        let subject = d.manifests[4].descriptor();
        let empty = data::empty_json().descriptor();
        let bagel_config = json!({"mediaType": BAGEL, "digest": EMPTY_JSON_DIGEST, "size": 2});
        let other_config = json!({"mediaType": OTHER, "digest": EMPTY_JSON_DIGEST, "size": 2});
        let a_config = ManifestBuilder::new(bagel_config, vec![d.ref_blob_a.descriptor()])
            .subject(subject.clone())
            .annotation(ANNOTATION, "A-config")
            .build();
        let a_layer = ManifestBuilder::new(empty.clone(), vec![d.ref_blob_a.descriptor()])
            .artifact_type(BAGEL)
            .subject(subject.clone())
            .annotation(ANNOTATION, "A-layer")
            .build();
        let index = IndexBuilder::new(vec![a_config.descriptor(), a_layer.descriptor()])
            .artifact_type(FOOD_STAND)
            .subject(subject.clone())
            .annotation(ANNOTATION, "index")
            .build();
        let b_config = ManifestBuilder::new(other_config, vec![d.ref_blob_b.descriptor()])
            .subject(subject.clone())
            .annotation(ANNOTATION, "B-config")
            .build();
        let b_layer = ManifestBuilder::new(empty.clone(), vec![d.ref_blob_b.descriptor()])
            .artifact_type(OTHER)
            .subject(subject)
            .annotation(ANNOTATION, "B-layer")
            .build();
        let c = ManifestBuilder::new(empty, vec![d.ref_blob_a.descriptor()])
            .artifact_type(BAGEL)
            .subject(d.manifests[3].descriptor())
            .annotation(ANNOTATION, "C")
            .build();
        Artifacts {
            a_config,
            a_layer,
            index,
            b_config,
            b_layer,
            c,
        }
    }
}

struct State {
    repo: String,
    d: LegacyData,
    art: Artifacts,
    tags: Option<Vec<String>>,
    page1: Option<Vec<String>>,
}

pub fn run(ctx: &Ctx, rep: &mut Reporter, d: &LegacyData) {
    let mut st = State {
        repo: ctx.repo("repo"),
        d: d.clone(),
        art: Artifacts::new(d),
        tags: None,
        page1: None,
    };
    rep.run(ctx, "discovery", &mut st, cases());
}

/// New suite: a repository nothing was pushed to.
pub fn run_empty_repo(ctx: &Ctx, rep: &mut Reporter) {
    let cases: Vec<Case<String>> = vec![
        case("tags list -> 200 or 404", |ctx, repo: &mut String| {
            let r = ctx.client.get(&ctx.tags_url(repo, "")).send()?;
            r.expect(&[200, 404])?;
            if r.status == 200 {
                let tags = r.json()?["tags"].clone();
                ensure(tags.is_null() || tags == json!([]), || {
                    format!("{}: tags of an empty repository: {tags}", r.what)
                })?;
            }
            Ok(())
        }),
        case(
            "referrers -> 200 empty OCI index",
            |ctx, repo: &mut String| {
                let digest = ops::unknown_digest(&mut ctx.rng("empty-repo"), Algo::Sha256);
                let (r, list) = ops::referrers(ctx, repo, &digest, "")?;
                ensure(list.is_empty(), || {
                    format!("{}: {} descriptors, want none", r.what, list.len())
                })
            },
        ),
    ];
    rep.run(ctx, "empty-repo", &mut ctx.repo("empty"), cases);
}

fn cases() -> Vec<Case<State>> {
    vec![
        case("setup push manifest 2 as test0..3 and TEST0..3", setup_tags),
        case(
            "setup push the {} blob and ref blob A",
            |ctx, s: &mut State| {
                let e = data::empty_json();
                ensure(e.digest == EMPTY_JSON_DIGEST, || "bad {} digest".into())?;
                ops::push_blob(ctx, &s.repo, &e)?;
                ops::push_blob(ctx, &s.repo, &s.d.ref_blob_a).map(drop)
            },
        ),
        case(
            "setup PUT artifact A-config before its subject -> OCI-Subject",
            |c, s: &mut State| put_referrer(c, s, |a| &a.a_config, 4),
        ),
        case(
            "setup PUT artifact A-layer -> OCI-Subject",
            |c, s: &mut State| put_referrer(c, s, |a| &a.a_layer, 4),
        ),
        case(
            "setup PUT index artifact -> OCI-Subject",
            |c, s: &mut State| put_referrer(c, s, |a| &a.index, 4),
        ),
        case("setup push manifest 4 as tagtest0", |ctx, s: &mut State| {
            ops::push_blob(ctx, &s.repo, &s.d.configs[4])?;
            ops::push_blob(ctx, &s.repo, &s.d.layer)?;
            let m = &s.d.manifests[4];
            ops::put_manifest(ctx, &s.repo, "tagtest0", m).map(drop)
        }),
        case(
            "setup PUT artifacts B-config and B-layer -> OCI-Subject",
            |c, s: &mut State| {
                ops::push_blob(c, &s.repo, &s.d.ref_blob_b)?;
                let mut soft = Soft::default();
                soft.check(put_referrer(c, s, |a| &a.b_config, 4));
                soft.check(put_referrer(c, s, |a| &a.b_layer, 4));
                soft.finish()
            },
        ),
        case(
            "setup PUT artifact C with a missing subject -> OCI-Subject",
            |c, s: &mut State| put_referrer(c, s, |a| &a.c, 3),
        ),
        case("tags list -> 200 with every tag, sorted", list_all),
        case("tags list ?n=half -> 200 with n tags", list_first_page),
        case(
            "tags list ?n=half&last= -> 200 with the next tags",
            list_second_page,
        ),
        case(
            "tags list ?n=0 -> 200 with no tags",
            |ctx, s: &mut State| {
                let (r, tags) = ops::list_tags(ctx, &s.repo, "n=0")?;
                ensure(tags.is_empty(), || format!("{}: got {tags:?}", r.what))?;
                ensure(r.header("Link").is_none(), || {
                    format!("{}: has a Link header", r.what)
                })
            },
        ),
        case(
            "referrers for an unknown digest -> 200 empty index",
            |ctx, s: &mut State| {
                let digest = ops::unknown_digest(&mut ctx.rng("discovery-unknown"), Algo::Sha256);
                let (r, list) = ops::referrers(ctx, &s.repo, &digest, "")?;
                ensure(list.is_empty(), || {
                    format!("{}: {} descriptors, want none", r.what, list.len())
                })
            },
        ),
        case(
            "referrers for manifest 4 -> 200 with 5 descriptors",
            |ctx, s: &mut State| {
                let (r, list) = ops::referrers(ctx, &s.repo, &s.d.manifests[4].digest, "")?;
                let a = &s.art;
                let want = [&a.a_config, &a.a_layer, &a.index, &a.b_config, &a.b_layer];
                ops::check_referrers(&r.what, &list, &want)
            },
        ),
        case(
            "referrers ?artifactType= -> 2 descriptors and OCI-Filters-Applied",
            |ctx, s: &mut State| {
                let q = format!("artifactType={BAGEL}");
                let (r, list) = ops::referrers(ctx, &s.repo, &s.d.manifests[4].digest, &q)?;
                r.header_eq("OCI-Filters-Applied", "artifactType")?;
                ops::check_referrers(&r.what, &list, &[&s.art.a_config, &s.art.a_layer])
            },
        ),
        case(
            "referrers for a missing subject -> 200 with 1 descriptor",
            |ctx, s: &mut State| {
                let (r, list) = ops::referrers(ctx, &s.repo, &s.d.manifests[3].digest, "")?;
                ops::check_referrers(&r.what, &list, &[&s.art.c])
            },
        ),
        case(
            "referrers for a malformed digest -> 400",
            |ctx, s: &mut State| {
                let url = ctx.referrers_url(&s.repo, "sha256:nothex", "");
                ctx.client.get(&url).send()?.expect(&[400]).map(drop)
            },
        ),
        case("teardown delete manifests -> 202", |ctx, s: &mut State| {
            let a = &s.art;
            let order = [
                &a.c,
                &a.b_layer,
                &a.b_config,
                &a.index,
                &a.a_layer,
                &a.a_config,
                &s.d.manifests[4],
                &s.d.manifests[2],
            ];
            let mut soft = Soft::default();
            for m in order {
                soft.check(ops::delete_manifest(ctx, &s.repo, &m.digest));
                soft.check(ops::expect_manifest_missing(ctx, &s.repo, &m.digest));
            }
            soft.finish()
        }),
        case("teardown delete blobs -> 202", |ctx, s: &mut State| {
            let d = &s.d;
            let empty = data::empty_json();
            let mut soft = Soft::default();
            for b in [
                &d.configs[2],
                &d.configs[4],
                &d.layer,
                &empty,
                &d.ref_blob_a,
                &d.ref_blob_b,
            ] {
                soft.check(ops::delete_blob(ctx, &s.repo, &b.digest));
            }
            soft.finish()
        }),
    ]
}

fn setup_tags(ctx: &Ctx, s: &mut State) -> R {
    ops::push_blob(ctx, &s.repo, &s.d.configs[2])?;
    ops::push_blob(ctx, &s.repo, &s.d.layer)?;
    let m = &s.d.manifests[2];
    for tag in TAGS {
        ops::put_manifest(ctx, &s.repo, tag, m)?;
    }
    Ok(())
}

/// PUT a referrer by digest: 201 and `OCI-Subject` naming manifest `subject`.
fn put_referrer(ctx: &Ctx, s: &mut State, pick: fn(&Artifacts) -> &Blob, subject: usize) -> R {
    let m = pick(&s.art);
    let r = ops::put_manifest(ctx, &s.repo, &m.digest, m)?;
    r.header_eq("OCI-Subject", &s.d.manifests[subject].digest)
        .map(drop)
}

fn list_all(ctx: &Ctx, s: &mut State) -> R {
    let (r, tags) = ops::list_tags(ctx, &s.repo, "")?;
    // Kept even if a check below fails, so pagination is still tested.
    s.tags = Some(tags.clone());
    for t in TAGS.iter().chain(&["tagtest0"]) {
        ensure(tags.iter().any(|x| x == t), || {
            format!("{}: tag {t} missing from {tags:?}", r.what)
        })?;
    }
    ops::check_tag_order(&r.what, &tags)
}

fn list_first_page(ctx: &Ctx, s: &mut State) -> R {
    let all = need(&s.tags, "full tag list")?;
    let half = all.len() / 2;
    let (r, tags) = ops::list_tags(ctx, &s.repo, &format!("n={half}"))?;
    ensure(tags.len() == half, || {
        format!("{}: {} tags, want {half}", r.what, tags.len())
    })?;
    ensure(tags[..] == all[..half], || {
        format!("{}: page {tags:?} is not the start of {all:?}", r.what)
    })?;
    s.page1 = Some(tags);
    Ok(())
}

fn list_second_page(ctx: &Ctx, s: &mut State) -> R {
    let all = need(&s.tags, "full tag list")?;
    let page1 = need(&s.page1, "first page")?;
    let half = page1.len();
    let last = page1
        .last()
        .ok_or("first page is empty: nothing to continue from")?;
    let (r, tags) = ops::list_tags(ctx, &s.repo, &format!("n={half}&last={last}"))?;
    ensure(tags.len() <= half, || {
        format!("{}: {} tags, want at most {half}", r.what, tags.len())
    })?;
    ensure(!tags.contains(last), || {
        format!("{}: page contains last={last}: {tags:?}", r.what)
    })?;
    let want = &all[half..(2 * half).min(all.len())];
    ensure(tags[..] == want[..], || {
        format!("{}: page {tags:?}, want {want:?}", r.what)
    })
}
