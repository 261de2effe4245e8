//! Legacy suite, push workflow (`02_push_test.go` of v1.1.1): streamed,
//! monolithic and chunked blob uploads, cross-repository mounts and manifest
//! uploads.

use crate::client::R;
use crate::data::{Algo, Blob, LegacyData, Rng};
use crate::ops::{self, with_query, Ctx, Upload};
use crate::runner::{case, ensure, need, Case, Reporter, Soft};

struct State {
    repo: String,
    crossmount: String,
    d: LegacyData,
    rng: Rng,
    /// Blob B as finally used (regrown when the registry's chunk minimum is
    /// above the first chunk), and the split point.
    blob_b: Blob,
    split: usize,
    /// Session whose first chunk was accepted (before the PATCH's Location).
    old_location: Option<String>,
    session: Option<Upload>,
}

pub fn run(ctx: &Ctx, rep: &mut Reporter, d: &LegacyData) {
    let mut st = State {
        repo: ctx.repo("repo"),
        crossmount: ctx.repo("crossmount"),
        d: d.clone(),
        rng: ctx.rng("push"),
        blob_b: d.blob_b.clone(),
        split: 22,
        old_location: None,
        session: None,
    };
    rep.run(ctx, "push", &mut st, cases());
}

fn cases() -> Vec<Case<State>> {
    vec![
        case("streamed upload POST, PATCH, PUT -> 201", streamed),
        case(
            "monolithic GET unknown blob -> 404",
            |ctx, s: &mut State| ops::expect_blob_missing(ctx, &s.repo, &s.d.configs[1].digest),
        ),
        case("monolithic POST ?digest= with body -> 201", post_digest),
        case(
            "monolithic POST then PUT config -> 201",
            |ctx, s: &mut State| post_put(ctx, &s.repo, &s.d.configs[1]),
        ),
        case(
            "monolithic POST then PUT layer -> 201",
            |ctx, s: &mut State| post_put(ctx, &s.repo, &s.d.layer),
        ),
        case(
            "chunked out-of-order first PATCH -> 416",
            chunk_out_of_order,
        ),
        case("chunked first chunk -> 202 with Range 0-end", chunk_first),
        case("chunked re-sent first chunk -> 416", chunk_resend),
        case("chunked GET upload status -> 204 with Range", chunk_status),
        case("chunked second chunk -> 202 with Range", chunk_second),
        case("chunked PUT ?digest= empty body -> 201", chunk_close),
        case(
            "cross-mount unknown digest without from -> 202",
            mount_unknown,
        ),
        case("cross-mount with from -> 201", mount_from),
        case("manifest GET unknown -> 404", |ctx, s: &mut State| {
            let m = &s.d.manifests[1];
            ops::expect_manifest_missing(ctx, &s.repo, &m.digest)
        }),
        case("manifest PUT as tag test0 -> 201", |c, s: &mut State| {
            put_tag(c, s, "test0")
        }),
        case("manifest PUT as tag test1 -> 201", |c, s: &mut State| {
            put_tag(c, s, "test1")
        }),
        case("manifest PUT as tag test2 -> 201", |c, s: &mut State| {
            put_tag(c, s, "test2")
        }),
        case("manifest PUT as tag test3 -> 201", |c, s: &mut State| {
            put_tag(c, s, "test3")
        }),
        case(
            "manifest PUT with no layers as emptylayer -> 201",
            |ctx, s: &mut State| {
                let m = &s.d.empty_layer_manifest;
                ops::put_manifest(ctx, &s.repo, "emptylayer", m).map(drop)
            },
        ),
        case("manifest GET by digest -> 200", |ctx, s: &mut State| {
            let m = &s.d.manifests[1];
            ops::get_manifest(ctx, &s.repo, &m.digest, m)?;
            ops::get_manifest(ctx, &s.repo, "test0", m)
        }),
        case("teardown delete manifests -> 202", |ctx, s: &mut State| {
            let mut soft = Soft::default();
            for m in [&s.d.manifests[1], &s.d.empty_layer_manifest] {
                soft.check(ops::delete_manifest(ctx, &s.repo, &m.digest));
                soft.check(ops::expect_manifest_missing(ctx, &s.repo, &m.digest));
            }
            soft.check(ops::expect_manifest_missing(ctx, &s.repo, "test0"));
            soft.finish()
        }),
        case("teardown delete blobs -> 202", |ctx, s: &mut State| {
            let mut soft = Soft::default();
            let blobs = [&s.d.blob_a, &s.blob_b, &s.d.configs[1], &s.d.layer];
            for b in blobs {
                soft.check(ops::delete_blob(ctx, &s.repo, &b.digest));
            }
            soft.check(ops::delete_blob(ctx, &s.crossmount, &s.d.blob_a.digest));
            soft.finish()
        }),
    ]
}

fn streamed(ctx: &Ctx, s: &mut State) -> R {
    let a = &s.d.blob_a;
    let mut up = ops::start_upload(ctx, &s.repo, "")?;
    let r = ctx.client.patch(&up.location).octets(&a.bytes).send()?;
    r.expect(&[202])?
        .header_eq("Range", &format!("0-{}", a.bytes.len() - 1))?;
    up.location = r.location(&ctx.client)?;
    let loc = ops::finish_upload(ctx, &up, &a.digest, &[])?;
    ops::verify_blob(ctx, &s.repo, &a.digest, &a.bytes)?;
    ops::verify_location(ctx, &loc, &a.bytes)
}

fn post_digest(ctx: &Ctx, s: &mut State) -> R {
    let c = &s.d.configs[1];
    let url = with_query(&ctx.uploads_url(&s.repo, ""), "digest", &c.digest);
    let r = ctx.client.post(&url).octets(&c.bytes).send()?;
    r.expect(&[201])?.digest_if_present(&c.digest)?;
    let loc = r.location(&ctx.client)?;
    ops::verify_blob(ctx, &s.repo, &c.digest, &c.bytes)?;
    ops::verify_location(ctx, &loc, &c.bytes)
}

fn post_put(ctx: &Ctx, repo: &str, b: &Blob) -> R {
    let loc = ops::push_blob(ctx, repo, b)?;
    ops::verify_blob(ctx, repo, &b.digest, &b.bytes)?;
    ops::verify_location(ctx, &loc, &b.bytes)
}

fn chunk_out_of_order(ctx: &Ctx, s: &mut State) -> R {
    let up = ops::start_upload(ctx, &s.repo, "")?;
    // Grow blob B when the registry wants bigger chunks (like the legacy
    // suite: 2*min-2 bytes, first chunk of `min`).
    if let Some(min) = up.chunk_min {
        if min > s.split {
            s.blob_b = Blob::new("application/octet-stream", s.rng.bytes(2 * min - 2));
            s.split = min;
        }
    }
    let b = &s.blob_b.bytes;
    let r = ctx
        .client
        .patch(&up.location)
        .header("Content-Range", &format!("{}-{}", s.split, b.len() - 1))
        .octets(&b[s.split..])
        .send()?;
    r.expect(&[416]).map(drop)
}

fn chunk_first(ctx: &Ctx, s: &mut State) -> R {
    let mut up = ops::start_upload(ctx, &s.repo, "")?;
    s.old_location = Some(up.location.clone());
    // patch_chunk checks 202, `Range: 0-<split-1>` (no `bytes=`) and Location.
    ops::patch_chunk(ctx, &mut up, &s.blob_b.bytes[..s.split], 0)?;
    s.session = Some(up);
    Ok(())
}

fn chunk_resend(ctx: &Ctx, s: &mut State) -> R {
    let old = need(&s.old_location, "chunked session")?;
    let r = ctx
        .client
        .patch(old)
        .header("Content-Range", &format!("0-{}", s.split - 1))
        .octets(&s.blob_b.bytes[..s.split])
        .send()?;
    r.expect(&[416]).map(drop)
}

fn chunk_status(ctx: &Ctx, s: &mut State) -> R {
    let up = s
        .session
        .as_mut()
        .ok_or("prerequisite missing: chunked session (an earlier case failed)")?;
    let r = ctx.client.get(&up.location).send()?;
    r.expect(&[204])?
        .header_eq("Range", &format!("0-{}", s.split - 1))?;
    up.location = r.location(&ctx.client)?;
    Ok(())
}

fn chunk_second(ctx: &Ctx, s: &mut State) -> R {
    let up = s
        .session
        .as_mut()
        .ok_or("prerequisite missing: chunked session (an earlier case failed)")?;
    ops::patch_chunk(ctx, up, &s.blob_b.bytes[s.split..], s.split).map(drop)
}

fn chunk_close(ctx: &Ctx, s: &mut State) -> R {
    let up = need(&s.session, "chunked session")?;
    let b = &s.blob_b;
    let r = ctx
        .client
        .put(&with_query(&up.location, "digest", &b.digest))
        .empty()
        .send()?;
    r.expect(&[201])?.digest_if_present(&b.digest)?;
    let loc = r.location(&ctx.client)?;
    ops::verify_blob(ctx, &s.repo, &b.digest, &b.bytes)?;
    ops::verify_location(ctx, &loc, &b.bytes)
}

fn mount_unknown(ctx: &Ctx, s: &mut State) -> R {
    let unknown = ops::unknown_digest(&mut s.rng, Algo::Sha256);
    let url = ctx.uploads_url(&s.crossmount, &format!("mount={unknown}"));
    let r = ctx.client.post(&url).empty().send()?;
    r.expect(&[202])?;
    let loc = r.location(&ctx.client)?;
    let prefix = ctx
        .client
        .url(&format!("/v2/{}/blobs/uploads/", s.crossmount));
    ensure(loc.starts_with(&prefix), || {
        format!("{}: Location {loc} is not under {prefix}", r.what)
    })?;
    // Not part of the check: drop the session the fallback opened.
    let _ = ctx.client.delete(&loc).send();
    Ok(())
}

fn mount_from(ctx: &Ctx, s: &mut State) -> R {
    let a = &s.d.blob_a;
    let url = ctx.uploads_url(
        &s.crossmount,
        &format!("mount={}&from={}", a.digest, s.repo),
    );
    let r = ctx.client.post(&url).empty().send()?;
    r.expect(&[201])?.digest_if_present(&a.digest)?;
    let loc = r.location(&ctx.client)?;
    let want = ctx.blob_url(&s.crossmount, &a.digest);
    ensure(loc == want, || {
        format!("{}: Location is {loc}, want {want}", r.what)
    })?;
    ops::verify_blob(ctx, &s.crossmount, &a.digest, &a.bytes)
}

fn put_tag(ctx: &Ctx, s: &mut State, tag: &str) -> R {
    let m = &s.d.manifests[1];
    ops::put_manifest(ctx, &s.repo, tag, m).map(drop)
}
