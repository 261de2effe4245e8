//! Legacy suite, content management (`04_management_test.go`): deleting a
//! tag, a manifest and blobs, and the tag count that follows.

use crate::data::LegacyData;
use crate::ops::{self, Ctx};
use crate::runner::{case, ensure, need, Case, Reporter, Soft};

const TAG: &str = "tagtest0";

struct State {
    repo: String,
    d: LegacyData,
    tag_count: Option<usize>,
}

pub fn run(ctx: &Ctx, rep: &mut Reporter, d: &LegacyData) {
    let mut st = State {
        repo: ctx.repo("repo"),
        d: d.clone(),
        tag_count: None,
    };
    rep.run(ctx, "management", &mut st, cases());
}

fn cases() -> Vec<Case<State>> {
    vec![
        case(
            "setup push manifest 3 as tagtest0 and count tags",
            |ctx, s: &mut State| {
                ops::push_blob(ctx, &s.repo, &s.d.configs[3])?;
                ops::push_blob(ctx, &s.repo, &s.d.layer)?;
                let m = &s.d.manifests[3];
                ops::put_manifest(ctx, &s.repo, TAG, m)?;
                let (r, tags) = ops::list_tags(ctx, &s.repo, "")?;
                ensure(tags.iter().any(|t| t == TAG), || {
                    format!("{}: {TAG} missing from {tags:?}", r.what)
                })?;
                s.tag_count = Some(tags.len());
                Ok(())
            },
        ),
        case("DELETE manifest by tag -> 202", |ctx, s: &mut State| {
            ops::delete_manifest(ctx, &s.repo, TAG)?;
            ops::expect_manifest_missing(ctx, &s.repo, TAG)?;
            // Only the tag is gone: the manifest is still there by digest.
            let m = &s.d.manifests[3];
            ops::get_manifest(ctx, &s.repo, &m.digest, m)
        }),
        case("DELETE manifest by digest -> 202", |ctx, s: &mut State| {
            ops::delete_manifest(ctx, &s.repo, &s.d.manifests[3].digest)
        }),
        case("GET deleted manifest -> 404", |ctx, s: &mut State| {
            ops::expect_manifest_missing(ctx, &s.repo, &s.d.manifests[3].digest)
        }),
        case("tags list -> one tag fewer", |ctx, s: &mut State| {
            let before = *need(&s.tag_count, "tag count")?;
            let r = ctx.client.get(&ctx.tags_url(&s.repo, "")).send()?;
            if r.status == 404 && before == 1 {
                return Ok(());
            }
            let (r, tags) = ops::list_tags(ctx, &s.repo, "")?;
            ensure(tags.len() == before - 1, || {
                format!(
                    "{}: {} tags, want {}: {tags:?}",
                    r.what,
                    tags.len(),
                    before - 1
                )
            })
        }),
        case(
            "DELETE config and layer blobs -> 202",
            |ctx, s: &mut State| {
                let mut soft = Soft::default();
                for b in [&s.d.configs[3], &s.d.layer] {
                    soft.check(ops::delete_blob(ctx, &s.repo, &b.digest));
                }
                soft.check(ops::expect_blob_missing(
                    ctx,
                    &s.repo,
                    &s.d.configs[3].digest,
                ));
                soft.finish()
            },
        ),
        case("DELETE an unknown blob -> 404", |ctx, s: &mut State| {
            let url = ctx.blob_url(&s.repo, &s.d.configs[3].digest);
            let r = ctx.client.delete(&url).send()?;
            r.expect(&[404])?
                .expect_error_code("BLOB_UNKNOWN")
                .map(drop)
        }),
    ]
}
