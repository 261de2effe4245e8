//! New suite (2026) blob cases: every upload workflow for sha256 and sha512,
//! each pushed blob then checked (HEAD, GET, the PUT's Location) and deleted;
//! Range GETs; the zero-byte and `{}` blobs; digest mismatches.

use crate::client::R;
use crate::data::{self, Algo, Blob, Rng, EMPTY_JSON_DIGEST};
use crate::ops::{self, session_query, with_query, Ctx, Upload};
use crate::runner::{case, ensure, Case, Reporter};

const SMALL: usize = 512;

struct State {
    algo: Algo,
    repo: String,
    /// Source repository of the mount cases.
    src: String,
    rng: Rng,
}

impl State {
    fn blob(&mut self, len: usize) -> Blob {
        Blob::with_algo("application/octet-stream", self.rng.bytes(len), self.algo)
    }

    /// POST query for a session of this algorithm.
    fn query(&self) -> String {
        session_query(&format!("{}:", self.algo.name()))
    }

    fn start(&self, ctx: &Ctx) -> R<Upload> {
        ops::start_upload(ctx, &self.repo, &self.query())
    }
}

pub fn run(ctx: &Ctx, rep: &mut Reporter) {
    for algo in [Algo::Sha256, Algo::Sha512] {
        let mut st = State {
            algo,
            repo: ctx.repo("repo"),
            src: ctx.repo("mountsource"),
            rng: ctx.rng(&format!("blobs-{}", algo.name())),
        };
        rep.run(
            ctx,
            &format!("blobs-{}", algo.name()),
            &mut st,
            workflow_cases(),
        );
    }
    let mut st = State {
        algo: Algo::Sha256,
        repo: ctx.repo("repo"),
        src: ctx.repo("mountsource"),
        rng: ctx.rng("blobs-range"),
    };
    rep.run(ctx, "blob-range", &mut st, range_cases());
    rep.run(ctx, "blob-special", &mut st, special_cases());
    rep.run(ctx, "bad-digest", &mut st, bad_digest_cases());
}

/// After a successful push: HEAD (200, exact Content-Length, no body), GET
/// (exact body), the PUT's Location, DELETE (202) and HEAD (404).
fn check_and_delete(ctx: &Ctx, repo: &str, b: &Blob, location: &str) -> R {
    ops::verify_blob(ctx, repo, &b.digest, &b.bytes)?;
    ops::verify_location(ctx, location, &b.bytes)?;
    ops::delete_blob(ctx, repo, &b.digest)
}

/// Chunk size for multi-chunk cases: max(1024, OCI-Chunk-Min-Length).
fn chunk_size(up: &Upload) -> usize {
    up.chunk_min.unwrap_or(0).max(1024)
}

fn workflow_cases() -> Vec<Case<State>> {
    vec![
        case("get missing blob -> 404", |ctx, s: &mut State| {
            let d = ops::unknown_digest(&mut s.rng, s.algo);
            ops::expect_blob_missing(ctx, &s.repo, &d)
        }),
        case("post only POST ?digest= -> 201", |ctx, s: &mut State| {
            let b = s.blob(SMALL);
            let url = with_query(&ctx.uploads_url(&s.repo, ""), "digest", &b.digest);
            let r = ctx.client.post(&url).octets(&b.bytes).send()?;
            r.expect(&[201])?.digest_if_present(&b.digest)?;
            check_and_delete(ctx, &s.repo, &b, &r.location(&ctx.client)?)
        }),
        case("post put -> 201", |ctx, s: &mut State| {
            let b = s.blob(SMALL);
            let up = s.start(ctx)?;
            let loc = ops::finish_upload(ctx, &up, &b.digest, &b.bytes)?;
            check_and_delete(ctx, &s.repo, &b, &loc)
        }),
        case("chunked single chunk -> 201", |ctx, s: &mut State| {
            let b = s.blob(SMALL);
            let mut up = s.start(ctx)?;
            ops::patch_chunk(ctx, &mut up, &b.bytes, 0)?;
            let loc = ops::finish_upload(ctx, &up, &b.digest, &[])?;
            check_and_delete(ctx, &s.repo, &b, &loc)
        }),
        case("chunked multi (4 chunks) -> 201", chunked_multi),
        case("chunked with last chunk in PUT -> 201", chunked_last_in_put),
        case(
            "streamed (chunked transfer encoding) -> 201",
            |ctx, s: &mut State| {
                let b = s.blob(SMALL);
                let mut up = s.start(ctx)?;
                let r = ctx.client.patch(&up.location).streamed(&b.bytes).send()?;
                r.expect(&[202])?
                    .header_eq("Range", &format!("0-{}", SMALL - 1))?;
                up.location = r.location(&ctx.client)?;
                let loc = ops::finish_upload(ctx, &up, &b.digest, &[])?;
                check_and_delete(ctx, &s.repo, &b, &loc)
            },
        ),
        case("mount with from -> 201", |ctx, s: &mut State| {
            let b = s.blob(SMALL);
            ops::push_blob(ctx, &s.src, &b)?;
            let q = format!("mount={}&from={}", b.digest, s.src);
            let r = ctx
                .client
                .post(&ctx.uploads_url(&s.repo, &q))
                .empty()
                .send()?;
            r.expect(&[201])?.digest_if_present(&b.digest)?;
            let loc = r.location(&ctx.client)?;
            let want = ctx.blob_url(&s.repo, &b.digest);
            ensure(loc == want, || {
                format!("{}: Location {loc}, want {want}", r.what)
            })?;
            check_and_delete(ctx, &s.repo, &b, &loc)?;
            // The source keeps its copy.
            ops::verify_blob(ctx, &s.src, &b.digest, &b.bytes)?;
            ops::delete_blob(ctx, &s.src, &b.digest)
        }),
        case(
            "anonymous mount (no from) -> 202 session",
            |ctx, s: &mut State| {
                let b = s.blob(SMALL);
                ops::push_blob(ctx, &s.src, &b)?;
                let q = format!("mount={}", b.digest);
                let r = ctx
                    .client
                    .post(&ctx.uploads_url(&s.repo, &q))
                    .empty()
                    .send()?;
                r.expect(&[202])?;
                // The fallback session must work as an ordinary upload.
                let up = Upload {
                    location: r.location(&ctx.client)?,
                    chunk_min: None,
                };
                let loc = ops::finish_upload(ctx, &up, &b.digest, &b.bytes)?;
                check_and_delete(ctx, &s.repo, &b, &loc)?;
                ops::delete_blob(ctx, &s.src, &b.digest)
            },
        ),
        case(
            "mount of a blob missing in source -> not 201",
            |ctx, s: &mut State| {
                let b = s.blob(SMALL);
                let q = format!("mount={}&from={}", b.digest, s.src);
                let r = ctx
                    .client
                    .post(&ctx.uploads_url(&s.repo, &q))
                    .empty()
                    .send()?;
                ensure(r.status != 201, || {
                    format!("{}: mounted a missing blob", r.what)
                })?;
                r.expect(&[202])?;
                let loc = r.location(&ctx.client)?;
                let _ = ctx.client.delete(&loc).send();
                ops::expect_blob_missing(ctx, &s.repo, &b.digest)
            },
        ),
        case("upload cancel DELETE -> 204", |ctx, s: &mut State| {
            let b = s.blob(SMALL);
            let mut up = s.start(ctx)?;
            ops::patch_chunk(ctx, &mut up, &b.bytes[..SMALL / 2], 0)?;
            ctx.client.delete(&up.location).send()?.expect(&[204])?;
            let r = ctx.client.get(&up.location).send()?;
            r.expect(&[404])?.expect_error_code("BLOB_UPLOAD_UNKNOWN")?;
            ops::expect_blob_missing(ctx, &s.repo, &b.digest)
        }),
        case("out-of-order chunk -> 416, then resume", out_of_order_patch),
        case(
            "out-of-order chunk in PUT -> 416, then resume",
            out_of_order_put,
        ),
    ]
}

fn chunked_multi(ctx: &Ctx, s: &mut State) -> R {
    let mut up = s.start(ctx)?;
    let c = chunk_size(&up);
    let b = s.blob(3 * c + c / 2);
    for (i, chunk) in b.bytes.chunks(c).enumerate() {
        ops::patch_chunk(ctx, &mut up, chunk, i * c)?;
        if i == 1 {
            let r = ctx.client.get(&up.location).send()?;
            r.expect(&[204])?
                .header_eq("Range", &format!("0-{}", 2 * c - 1))?;
            up.location = r.location(&ctx.client)?;
        }
    }
    let loc = ops::finish_upload(ctx, &up, &b.digest, &[])?;
    check_and_delete(ctx, &s.repo, &b, &loc)
}

/// PUT carrying the final chunk, with `Content-Range`.
fn put_final_chunk(ctx: &Ctx, up: &Upload, b: &Blob, start: usize) -> R<crate::client::Resp> {
    ctx.client
        .put(&with_query(&up.location, "digest", &b.digest))
        .header("Content-Range", &format!("{start}-{}", b.bytes.len() - 1))
        .octets(&b.bytes[start..])
        .send()
}

fn chunked_last_in_put(ctx: &Ctx, s: &mut State) -> R {
    let mut up = s.start(ctx)?;
    let c = chunk_size(&up);
    let b = s.blob(3 * c + c / 2);
    for i in 0..3 {
        ops::patch_chunk(ctx, &mut up, &b.bytes[i * c..(i + 1) * c], i * c)?;
    }
    let r = put_final_chunk(ctx, &up, &b, 3 * c)?;
    r.expect(&[201])?.digest_if_present(&b.digest)?;
    check_and_delete(ctx, &s.repo, &b, &r.location(&ctx.client)?)
}

/// After a rejected chunk: GET status → 204, `Range: 0-<end>`, Location.
fn status_after_416(ctx: &Ctx, up: &mut Upload, end: usize) -> R {
    let r = ctx.client.get(&up.location).send()?;
    r.expect(&[204])?.header_eq("Range", &format!("0-{end}"))?;
    up.location = r.location(&ctx.client)?;
    Ok(())
}

fn out_of_order_patch(ctx: &Ctx, s: &mut State) -> R {
    let mut up = s.start(ctx)?;
    let c = chunk_size(&up);
    let b = s.blob(3 * c);
    ops::patch_chunk(ctx, &mut up, &b.bytes[..c], 0)?;
    let r = ctx
        .client
        .patch(&up.location)
        .header("Content-Range", &format!("{}-{}", 2 * c, 3 * c - 1))
        .octets(&b.bytes[2 * c..])
        .send()?;
    r.expect(&[416])?
        .header_eq("Range", &format!("0-{}", c - 1))?;
    status_after_416(ctx, &mut up, c - 1)?;
    ops::patch_chunk(ctx, &mut up, &b.bytes[c..2 * c], c)?;
    ops::patch_chunk(ctx, &mut up, &b.bytes[2 * c..], 2 * c)?;
    let loc = ops::finish_upload(ctx, &up, &b.digest, &[])?;
    check_and_delete(ctx, &s.repo, &b, &loc)
}

fn out_of_order_put(ctx: &Ctx, s: &mut State) -> R {
    let mut up = s.start(ctx)?;
    let c = chunk_size(&up);
    let b = s.blob(3 * c);
    ops::patch_chunk(ctx, &mut up, &b.bytes[..c], 0)?;
    let r = put_final_chunk(ctx, &up, &b, 2 * c)?;
    r.expect(&[416])?;
    status_after_416(ctx, &mut up, c - 1)?;
    ops::patch_chunk(ctx, &mut up, &b.bytes[c..2 * c], c)?;
    let r = put_final_chunk(ctx, &up, &b, 2 * c)?;
    r.expect(&[201])?.digest_if_present(&b.digest)?;
    check_and_delete(ctx, &s.repo, &b, &r.location(&ctx.client)?)
}

// ---------------------------------------------------------------- ranges

const RANGE_BLOB: usize = 2048;

fn range_cases() -> Vec<Case<State>> {
    let mut cases = vec![case("setup push a 2048-byte blob", |ctx, s: &mut State| {
        let b = range_blob();
        ops::push_blob(ctx, &s.repo, &b).map(drop)
    })];
    for (range, first, last) in [
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
    ] {
        cases.push(case(
            format!("GET {range} -> 206"),
            move |ctx, s: &mut State| range_ok(ctx, s, range, first, last),
        ));
    }
    for range in ["bytes=500-0", "bytes=5000-10000"] {
        cases.push(case(
            format!("GET {range} -> 416"),
            move |ctx, s: &mut State| {
                let b = range_blob();
                let r = ctx
                    .client
                    .get(&ctx.blob_url(&s.repo, &b.digest))
                    .header("Range", range)
                    .send()?;
                r.expect(&[416]).map(drop)
            },
        ));
    }
    cases.push(case("teardown delete the blob", |ctx, s: &mut State| {
        let b = range_blob();
        ops::delete_blob(ctx, &s.repo, &b.digest)
    }));
    cases
}

/// The 2048-byte blob, the same on every call.
fn range_blob() -> Blob {
    let mut rng = Rng::new(2048);
    Blob::new("application/octet-stream", rng.bytes(RANGE_BLOB))
}

fn range_ok(ctx: &Ctx, s: &State, range: &str, first: usize, last: usize) -> R {
    let b = range_blob();
    let r = ctx
        .client
        .get(&ctx.blob_url(&s.repo, &b.digest))
        .header("Range", range)
        .send()?;
    r.expect(&[206])?
        .content_length_eq(last - first + 1)?
        .body_eq(&b.bytes[first..=last])?;
    let cr = r.need_header("Content-Range")?;
    let ok = [
        format!("bytes {first}-{last}/{RANGE_BLOB}"),
        format!("bytes {first}-{last}/*"),
    ];
    ensure(ok.iter().any(|x| x == cr), || {
        format!("{}: Content-Range is {cr:?}, want {:?}", r.what, ok[0])
    })
}

// ---------------------------------------------------------- special blobs

fn special_cases() -> Vec<Case<State>> {
    vec![
        case(
            "zero-byte blob push, head, get, delete",
            |ctx, s: &mut State| {
                let b = Blob::new("application/octet-stream", Vec::new());
                let loc = ops::push_blob(ctx, &s.repo, &b)?;
                check_and_delete(ctx, &s.repo, &b, &loc)
            },
        ),
        case("{} blob push, head, get, delete", |ctx, s: &mut State| {
            let b = data::empty_json();
            ensure(b.digest == EMPTY_JSON_DIGEST, || "bad {} digest".into())?;
            let loc = ops::push_blob(ctx, &s.repo, &b)?;
            check_and_delete(ctx, &s.repo, &b, &loc)
        }),
    ]
}

// ------------------------------------------------------------ bad digests

/// A blob and a body with 5 extra bytes, so the body does not match.
fn mismatch(s: &mut State) -> (Blob, Vec<u8>) {
    let b = s.blob(SMALL);
    let mut body = b.bytes.clone();
    body.extend_from_slice(&s.rng.bytes(5));
    (b, body)
}

/// The closing request must be 400 `DIGEST_INVALID` and store nothing.
fn rejected(ctx: &Ctx, s: &State, r: &crate::client::Resp, digest: &str) -> R {
    r.expect(&[400])?.expect_error_code("DIGEST_INVALID")?;
    ops::expect_blob_missing(ctx, &s.repo, digest)
}

fn bad_digest_cases() -> Vec<Case<State>> {
    vec![
        case("post only -> 400", |ctx, s: &mut State| {
            let (b, body) = mismatch(s);
            let url = with_query(&ctx.uploads_url(&s.repo, ""), "digest", &b.digest);
            let r = ctx.client.post(&url).octets(&body).send()?;
            rejected(ctx, s, &r, &b.digest)
        }),
        case("post put -> 400", |ctx, s: &mut State| {
            let (b, body) = mismatch(s);
            let up = s.start(ctx)?;
            let url = with_query(&up.location, "digest", &b.digest);
            let r = ctx.client.put(&url).octets(&body).send()?;
            rejected(ctx, s, &r, &b.digest)
        }),
        case("chunked -> 400", |ctx, s: &mut State| {
            let (b, body) = mismatch(s);
            let mut up = s.start(ctx)?;
            ops::patch_chunk(ctx, &mut up, &body, 0)?;
            let url = with_query(&up.location, "digest", &b.digest);
            let r = ctx.client.put(&url).empty().send()?;
            rejected(ctx, s, &r, &b.digest)
        }),
        case("chunked with PUT chunk -> 400", |ctx, s: &mut State| {
            let (b, body) = mismatch(s);
            let mut up = s.start(ctx)?;
            ops::patch_chunk(ctx, &mut up, &body[..SMALL / 2], 0)?;
            let url = with_query(&up.location, "digest", &b.digest);
            let r = ctx
                .client
                .put(&url)
                .header(
                    "Content-Range",
                    &format!("{}-{}", SMALL / 2, body.len() - 1),
                )
                .octets(&body[SMALL / 2..])
                .send()?;
            rejected(ctx, s, &r, &b.digest)
        }),
        case("streamed -> 400", |ctx, s: &mut State| {
            let (b, body) = mismatch(s);
            let mut up = s.start(ctx)?;
            let r = ctx.client.patch(&up.location).streamed(&body).send()?;
            r.expect(&[202])?;
            up.location = r.location(&ctx.client)?;
            let url = with_query(&up.location, "digest", &b.digest);
            let r = ctx.client.put(&url).empty().send()?;
            rejected(ctx, s, &r, &b.digest)
        }),
        case(
            "malformed digest sha256-xyz -> 400",
            |ctx, s: &mut State| {
                let b = s.blob(SMALL);
                let up = s.start(ctx)?;
                let url = with_query(&up.location, "digest", "sha256:xyz");
                let r = ctx.client.put(&url).octets(&b.bytes).send()?;
                r.expect(&[400])?
                    .expect_error_code("DIGEST_INVALID")
                    .map(drop)
            },
        ),
        case("unsupported algorithm md5 -> 400", |ctx, s: &mut State| {
            let b = s.blob(SMALL);
            let up = s.start(ctx)?;
            let url = with_query(
                &up.location,
                "digest",
                "md5:d41d8cd98f00b204e9800998ecf8427e",
            );
            let r = ctx.client.put(&url).octets(&b.bytes).send()?;
            // DIGEST_INVALID or UNSUPPORTED: the client checked the code list.
            r.expect(&[400]).map(drop)
        }),
    ]
}
