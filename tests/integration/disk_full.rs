//! A full data directory: a small tmpfs mounted as the data dir (the tests run as root; they
//! skip, saying so, only where mounting is not permitted), filled until writes fail, then
//! freed again, with the server running throughout.

use std::io::Write;
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{image_manifest, location, sha256, with_query, TestServer, OCI_MANIFEST};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (after saying why) where this process may not mount.
    fn mount(mib: u64) -> Option<Tmpfs> {
        use std::ffi::CString;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let target = CString::new(path.to_str().unwrap()).unwrap();
        let options = CString::new(format!("size={mib}m")).unwrap();
        let fstype = CString::new("tmpfs").unwrap();
        // SAFETY: every pointer is a NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                fstype.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EPERM) {
                eprintln!("SKIPPED: mounting a tmpfs is not permitted here ({e}); run as root");
                return None;
            }
            panic!("mounting a tmpfs on {}: {e}", path.display());
        }
        Some(Tmpfs {
            dir: Some(dir),
            path,
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = std::ffi::CString::new(self.path.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path; MNT_DETACH lets go even if something is still open.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        drop(self.dir.take());
    }
}

/// Writes `bytes` into a new file (all of them, or until the filesystem is full when `None`).
fn fill(path: &Path, bytes: Option<u64>) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match bytes {
            Some(total) if written >= total => break,
            Some(total) => (total - written).min(chunk.len() as u64) as usize,
            None => chunk.len(),
        };
        match f.write(&chunk[..n]) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && bytes.is_none() => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // A last byte-wise top-up, so not even a page is left.
    if bytes.is_none() {
        while f.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
    }
    written
}

/// POST + PUT of one blob; the failing response if any.
async fn try_push_blob(
    s: &TestServer,
    repo: &str,
    data: &[u8],
) -> Result<String, (StatusCode, Value)> {
    let digest = sha256(data);
    let r = s
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::ACCEPTED {
        return Err((r.status(), r.json().await.unwrap_or(Value::Null)));
    }
    let loc = location(&r);
    let r = s
        .req(Method::PUT, &with_query(&loc, &format!("digest={digest}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::CREATED {
        return Err((r.status(), r.json().await.unwrap_or(Value::Null)));
    }
    Ok(digest)
}

fn blob(i: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (j as u32)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i)
            .to_le_bytes()[1];
    }
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn assert_insufficient_storage(status: StatusCode, body: &Value, cause: &str) {
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert_eq!(body["errors"][0]["code"], "UNKNOWN", "{body}");
    assert!(
        message.starts_with("insufficient storage: ") && message.contains(cause),
        "{message}"
    );
}

async fn readyz(s: &TestServer) -> (StatusCode, Value) {
    let r = s.get("/readyz").await;
    (r.status(), r.json().await.unwrap())
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Blob data stops at the reserve with a 507 naming it; nothing of the failed upload stays;
/// reads, and small metadata writes, go on; `/readyz` says 503; freeing space lets pushes
/// through again without a restart, and the server stops cleanly.
#[tokio::test]
async fn a_full_data_directory_refuses_writes_clearly_and_recovers() {
    let Some(fs) = Tmpfs::mount(48) else { return };
    let data = fs.path.join("data");
    let s = TestServer::start_with(|c| {
        c.data_dir = data.clone();
        c.min_free_bytes = 16 << 20;
    })
    .await;
    let filler = fs.path.join("filler");
    fill(&filler, Some(16 << 20));
    let repo = "full/stream";

    let mut pushed = Vec::new();
    let (status, body) = loop {
        assert!(pushed.len() < 64, "48 MiB never filled up");
        let data = blob(pushed.len() as u32, 1 << 20);
        match try_push_blob(&s, repo, &data).await {
            Ok(digest) => pushed.push((digest, data)),
            Err(refusal) => break refusal,
        }
    };
    assert!(pushed.len() >= 4, "only {} blobs fit", pushed.len());
    assert_insufficient_storage(status, &body, "min_free_bytes");
    assert_eq!(
        entries(&data.join("uploads")),
        0,
        "a failed upload left files"
    );

    for (digest, bytes) in [&pushed[0], &pushed[pushed.len() - 1]] {
        let r = s.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&r.bytes().await.unwrap()[..], &bytes[..]);
    }
    let (status, body) = readyz(&s).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["reason"].as_str().unwrap().contains("min_free_bytes"),
        "{body}"
    );
    // Metadata writes use half the reserve: an image of blobs already stored still lands.
    let (config, layer) = (&pushed[0].0, &pushed[1].0);
    let manifest = image_manifest(config, 1 << 20, &[(layer, 1 << 20)], "");
    let r = s
        .put_manifest(repo, "in-reserve", OCI_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    std::fs::remove_file(&filler).unwrap();
    assert_eq!(readyz(&s).await.0, StatusCode::OK);
    let again = blob(1000, 1 << 20);
    let digest = try_push_blob(&s, repo, &again)
        .await
        .expect("a push once space is back");
    let r = s.get(&format!("/v2/{repo}/blobs/{digest}")).await;
    assert_eq!(r.bytes().await.unwrap().len(), again.len());

    let mut s = s;
    s.stop().await; // panics unless the server stopped without an error
}

/// Without a reserve the metadata store itself meets ENOSPC. sled 0.34 then refuses every
/// later write until reopened; berth reopens it at the first write once space is back, and
/// every acknowledged write is still there after a restart.
#[tokio::test]
async fn the_metadata_store_writes_again_after_enospc_without_a_restart() {
    let Some(fs) = Tmpfs::mount(24) else { return };
    let data = fs.path.join("data");
    let s = TestServer::start_with(|c| {
        c.data_dir = data.clone();
        c.min_free_bytes = 0;
    })
    .await;
    let repo = "full/meta";
    let (first, manifest) = s.push_image(repo, "first", "enospc").await;
    let filler = fs.path.join("filler");
    fill(&filler, None);

    let mut tagged = Vec::new();
    let (status, body) = loop {
        assert!(tagged.len() < 20_000, "sled never ran out of space");
        let tag = format!("t{}", tagged.len());
        let r = s.put_manifest(repo, &tag, OCI_MANIFEST, &manifest).await;
        if r.status() != StatusCode::CREATED {
            break (r.status(), r.json::<Value>().await.unwrap_or(Value::Null));
        }
        tagged.push(tag);
    };
    assert_insufficient_storage(status, &body, "no space left");
    let r = s.get(&format!("/v2/{repo}/manifests/first")).await;
    assert_eq!(r.status(), StatusCode::OK, "reads go on");
    assert_eq!(readyz(&s).await.0, StatusCode::SERVICE_UNAVAILABLE);

    std::fs::remove_file(&filler).unwrap();
    let r = s.put_manifest(repo, "after", OCI_MANIFEST, &manifest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    tagged.push("after".into());
    assert_eq!(readyz(&s).await.0, StatusCode::OK);

    let s = s.restart().await;
    for tag in tagged.iter().chain([&"first".to_string()]) {
        let r = s.get(&format!("/v2/{repo}/manifests/{tag}")).await;
        assert_eq!(r.status(), StatusCode::OK, "acknowledged tag {tag} lost");
        assert_eq!(
            crate::common::header(&r, "docker-content-digest"),
            Some(&first[..])
        );
    }
}
