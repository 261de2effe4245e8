//! Legacy suite, pull workflow (`01_pull_test.go` of v1.1.1), preceded by
//! the API version check.

use crate::client::R;
use crate::data::{Algo, LegacyData, ACCEPT_MANIFESTS};
use crate::ops::{self, Ctx};
use crate::runner::{case, Case, Reporter, Soft};

struct State {
    repo: String,
    d: LegacyData,
    unknown: String,
}

pub fn run(ctx: &Ctx, rep: &mut Reporter, d: &LegacyData) {
    let mut st = State {
        repo: ctx.repo("repo"),
        d: d.clone(),
        unknown: ops::unknown_digest(&mut ctx.rng("pull-unknown"), Algo::Sha256),
    };
    rep.run(ctx, "pull", &mut st, cases());
}

fn cases() -> Vec<Case<State>> {
    vec![
        case("ping GET /v2/ -> 200 with API version header", ping),
        case("setup push configs 0 and 1 and the layer", setup_blobs),
        case(
            "setup push manifest 0 as tag tagtest0",
            |ctx, s: &mut State| {
                let m = &s.d.manifests[0];
                ops::put_manifest(ctx, &s.repo, "tagtest0", m).map(drop)
            },
        ),
        case("setup push manifest 1 by digest", |ctx, s: &mut State| {
            let m = &s.d.manifests[1];
            ops::put_manifest(ctx, &s.repo, &m.digest, m).map(drop)
        }),
        case("HEAD unknown blob -> 404", |ctx, s: &mut State| {
            let url = ctx.blob_url(&s.repo, &s.unknown);
            ctx.client.head(&url).send()?.expect(&[404]).map(drop)
        }),
        case("HEAD blob -> 200", |ctx, s: &mut State| {
            let c = &s.d.configs[0];
            let r = ctx.client.head(&ctx.blob_url(&s.repo, &c.digest)).send()?;
            r.expect(&[200])?
                .content_length_eq(c.bytes.len())?
                .header_eq("Docker-Content-Digest", &c.digest)
                .map(drop)
        }),
        case("GET unknown blob -> 404", |ctx, s: &mut State| {
            let url = ctx.blob_url(&s.repo, &s.unknown);
            let r = ctx.client.get(&url).send()?;
            r.expect(&[404])?
                .expect_error_code("BLOB_UNKNOWN")
                .map(drop)
        }),
        case("GET blob -> 200", |ctx, s: &mut State| {
            let c = &s.d.configs[0];
            let r = ctx.client.get(&ctx.blob_url(&s.repo, &c.digest)).send()?;
            r.expect(&[200])?.body_eq(&c.bytes).map(drop)
        }),
        case(
            "HEAD manifest .INVALID_MANIFEST_NAME -> 404",
            |ctx, s: &mut State| {
                let url = ctx.manifest_url(&s.repo, ".INVALID_MANIFEST_NAME");
                let r = ctx
                    .client
                    .head(&url)
                    .header("Accept", ACCEPT_MANIFESTS)
                    .send()?;
                r.expect(&[404]).map(drop)
            },
        ),
        case("HEAD manifest 0 by digest -> 200", |ctx, s: &mut State| {
            let m = &s.d.manifests[0];
            ops::head_manifest(ctx, &s.repo, &m.digest, m)
        }),
        case("HEAD manifest 1 by digest -> 200", |ctx, s: &mut State| {
            let m = &s.d.manifests[1];
            ops::head_manifest(ctx, &s.repo, &m.digest, m)
        }),
        case("HEAD manifest by tag -> 200", |ctx, s: &mut State| {
            ops::head_manifest(ctx, &s.repo, "tagtest0", &s.d.manifests[0])
        }),
        case("GET unknown manifest -> 404", |ctx, s: &mut State| {
            ops::expect_manifest_missing(ctx, &s.repo, &s.unknown)
        }),
        case("GET manifest 0 by digest -> 200", |ctx, s: &mut State| {
            let m = &s.d.manifests[0];
            ops::get_manifest(ctx, &s.repo, &m.digest, m)
        }),
        case("GET manifest 1 by digest -> 200", |ctx, s: &mut State| {
            let m = &s.d.manifests[1];
            ops::get_manifest(ctx, &s.repo, &m.digest, m)
        }),
        case("GET manifest by tag -> 200", |ctx, s: &mut State| {
            ops::get_manifest(ctx, &s.repo, "tagtest0", &s.d.manifests[0])
        }),
        case(
            "GET manifest sha256-totallywrong -> 400 or 404 with OCI error",
            |ctx, s: &mut State| {
                let url = ctx.manifest_url(&s.repo, "sha256:totallywrong");
                let r = ctx
                    .client
                    .get(&url)
                    .header("Accept", ACCEPT_MANIFESTS)
                    .send()?;
                // The client already checked the error body's codes.
                r.expect(&[400, 404]).map(drop)
            },
        ),
        case("teardown delete manifests -> 202", |ctx, s: &mut State| {
            let mut soft = Soft::default();
            for m in &s.d.manifests[..2] {
                soft.check(ops::delete_manifest(ctx, &s.repo, &m.digest));
                soft.check(ops::expect_manifest_missing(ctx, &s.repo, &m.digest));
            }
            // Deleting the manifest removes the tags pointing at it.
            soft.check(ops::expect_manifest_missing(ctx, &s.repo, "tagtest0"));
            soft.finish()
        }),
        case("teardown delete blobs -> 202", |ctx, s: &mut State| {
            let mut soft = Soft::default();
            for b in [&s.d.configs[0], &s.d.configs[1], &s.d.layer] {
                soft.check(ops::delete_blob(ctx, &s.repo, &b.digest));
            }
            soft.finish()
        }),
    ]
}

fn ping(ctx: &Ctx, _: &mut State) -> R {
    let r = ctx.client.get(&ctx.client.url("/v2/")).send()?;
    r.expect(&[200])?
        .header_eq("Docker-Distribution-API-Version", "registry/2.0")
        .map(drop)
}

fn setup_blobs(ctx: &Ctx, s: &mut State) -> R {
    for b in [&s.d.configs[0], &s.d.configs[1], &s.d.layer] {
        ops::push_blob(ctx, &s.repo, b)?;
    }
    Ok(())
}
