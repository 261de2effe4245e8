//! One behavioural suite every backend must pass. Each entry point expects a fresh, empty store
//! and panics on the first deviation, so backends call it from their own `#[test]`s.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::blob::{BlobStore, ByteStream, UploadId};
use crate::digest::{Algorithm, Digest};
use crate::error::Error;
use crate::metadata::{MetadataStore, MetadataStoreExt, TxError};

/// Runs every metadata check below.
pub fn metadata_suite(store: &dyn MetadataStore) {
    metadata_get_put_delete(store);
    metadata_scan(store);
    metadata_abort_writes_nothing(store);
    metadata_read_your_writes(store);
    metadata_conflicts_rerun_the_body(store);
    metadata_concurrent_counter(store);
    metadata_revisions(store);
    store.flush().expect("flush");
}

/// One revision per transaction that asks, the same on every call within it, none taken by
/// an aborted transaction or one that never asks.
fn metadata_revisions(store: &dyn MetadataStore) {
    let start = store.revision().unwrap();
    let (a, b) = store
        .transaction(|tx| {
            let a = tx.revision()?;
            tx.put(b"rev/a", b"1")?;
            Ok::<_, TxError<()>>((a, tx.revision()?))
        })
        .unwrap();
    assert_eq!((a, b), (start + 1, start + 1));
    let aborted = store.transaction(|tx| {
        tx.revision()?;
        Err::<(), _>(TxError::Abort("no"))
    });
    assert!(matches!(aborted, Err(TxError::Abort("no"))));
    store
        .transaction(|tx| tx.put(b"rev/b", b"2").map_err(TxError::<()>::from))
        .unwrap();
    assert_eq!(store.revision().unwrap(), start + 1);
    let c = store
        .transaction(|tx| tx.revision().map_err(TxError::<()>::from))
        .unwrap();
    assert_eq!(c, start + 2);
    assert_eq!(store.revision().unwrap(), start + 2);
    // Scans of ordinary keyspaces never see where the revision is kept.
    assert_eq!(store.scan(b"rev", None, 1000).unwrap().len(), 2);
}

fn put(store: &dyn MetadataStore, key: &[u8], value: &[u8]) {
    store
        .transaction(|tx| tx.put(key, value).map_err(TxError::<()>::from))
        .expect("put");
}

fn keys(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<Vec<u8>> {
    entries.into_iter().map(|(k, _)| k).collect()
}

pub fn metadata_get_put_delete(store: &dyn MetadataStore) {
    assert_eq!(store.get(b"gpd\0k").unwrap(), None);
    put(store, b"gpd\0k", b"one");
    assert_eq!(store.get(b"gpd\0k").unwrap().as_deref(), Some(&b"one"[..]));
    put(store, b"gpd\0k", b"two");
    assert_eq!(store.get(b"gpd\0k").unwrap().as_deref(), Some(&b"two"[..]));
    put(store, b"gpd\0empty", b"");
    assert_eq!(store.get(b"gpd\0empty").unwrap().as_deref(), Some(&b""[..]));

    store
        .transaction(|tx| {
            tx.delete(b"gpd\0k")?;
            // Deleting an absent key is not an error.
            tx.delete(b"gpd\0never")?;
            Ok::<_, TxError<()>>(())
        })
        .unwrap();
    assert_eq!(store.get(b"gpd\0k").unwrap(), None);
    assert_eq!(store.get(b"gpd\0never").unwrap(), None);
}

pub fn metadata_scan(store: &dyn MetadataStore) {
    let p = b"scan\0r\0";
    let inside: Vec<Vec<u8>> = [
        &b"\0"[..],
        b"\x01",
        b"a",
        b"ab",
        b"b",
        b"\x7f",
        b"\xff",
        b"\xff\0",
    ]
    .iter()
    .map(|s| [&p[..], s].concat())
    .collect();
    // Neighbours that sort right next to the keyspace but are not in it.
    let outside: [&[u8]; 4] = [b"scan\0r", b"scan\0q\0z", b"scan\0r\x01", b"scan\0s\0a"];
    for k in inside.iter().rev() {
        put(store, k, k);
    }
    for k in outside {
        put(store, k, b"x");
    }
    let scan = |after: Option<&[u8]>, limit| keys(store.scan(p, after, limit).unwrap());

    let all = store.scan(p, None, usize::MAX).unwrap();
    assert_eq!(keys(all.clone()), inside, "byte order, prefix only");
    assert!(
        all.iter().all(|(k, v)| k == v),
        "values come with their keys"
    );
    assert_eq!(scan(None, 3), inside[..3]);
    assert_eq!(scan(None, 0), Vec::<Vec<u8>>::new());
    // `after` is exclusive, need not exist, and may lie outside the prefix on either side.
    assert_eq!(scan(Some(&inside[2]), 2), inside[3..5]);
    assert_eq!(
        scan(Some(&[&p[..], b"aa"].concat()), usize::MAX),
        inside[3..]
    );
    assert_eq!(scan(Some(b"scan\0"), usize::MAX), inside);
    assert_eq!(scan(Some(&inside[7]), usize::MAX), Vec::<Vec<u8>>::new());
    assert_eq!(scan(Some(b"scan\0s"), usize::MAX), Vec::<Vec<u8>>::new());
    // Paging with `after` = last key seen visits every key exactly once.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = scan(after.as_deref(), 3);
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        paged.extend(page);
    }
    assert_eq!(paged, inside);
    assert_eq!(store.scan(b"scan\0nothing\0", None, 10).unwrap(), vec![]);
}

pub fn metadata_abort_writes_nothing(store: &dyn MetadataStore) {
    put(store, b"abort\0kept", b"v");
    let r = store.transaction(|tx| {
        tx.put(b"abort\0new", b"v")?;
        tx.delete(b"abort\0kept")?;
        Err::<(), _>(TxError::Abort("changed my mind"))
    });
    assert!(matches!(r, Err(TxError::Abort("changed my mind"))), "{r:?}");
    assert_eq!(store.get(b"abort\0new").unwrap(), None);
    assert_eq!(
        store.get(b"abort\0kept").unwrap().as_deref(),
        Some(&b"v"[..])
    );

    // A storage error raised by the body is reported as such, and also writes nothing.
    let r = store.transaction(|tx| {
        tx.put(b"abort\0new", b"v")?;
        Err::<(), TxError<()>>(TxError::Storage(Error::Backend("injected".into())))
    });
    assert!(
        matches!(r, Err(TxError::Storage(Error::Backend(ref m))) if m == "injected"),
        "{r:?}"
    );
    assert_eq!(store.get(b"abort\0new").unwrap(), None);
}

pub fn metadata_read_your_writes(store: &dyn MetadataStore) {
    put(store, b"ryw\0old", b"1");
    let seen = store
        .transaction(|tx| {
            let before = tx.get(b"ryw\0new")?;
            tx.put(b"ryw\0new", b"2")?;
            let after_put = tx.get(b"ryw\0new")?;
            tx.delete(b"ryw\0old")?;
            let after_delete = tx.get(b"ryw\0old")?;
            tx.put(b"ryw\0new", b"3")?;
            let overwritten = tx.get(b"ryw\0new")?;
            Ok::<_, TxError<()>>((before, after_put, after_delete, overwritten))
        })
        .unwrap();
    assert_eq!(seen, (None, Some(b"2".to_vec()), None, Some(b"3".to_vec())));
    assert_eq!(store.get(b"ryw\0new").unwrap().as_deref(), Some(&b"3"[..]));
    assert_eq!(store.get(b"ryw\0old").unwrap(), None);
}

/// A body that reports a conflict is run again from scratch; one that never stops reporting
/// one gets the conflict back eventually, and neither leaves any write behind.
pub fn metadata_conflicts_rerun_the_body(store: &dyn MetadataStore) {
    let mut runs = 0;
    let r = store.transaction(|tx| {
        runs += 1;
        if runs == 1 {
            tx.put(b"retry\0first", b"x")?;
            return Err(TxError::<()>::Storage(Error::Conflict));
        }
        tx.put(b"retry\0second", b"x")?;
        Ok(runs)
    });
    assert_eq!(r.unwrap(), 2);
    assert_eq!(store.get(b"retry\0first").unwrap(), None);
    assert!(store.get(b"retry\0second").unwrap().is_some());

    let r = store.transaction(|tx| {
        tx.put(b"retry\0never", b"x")?;
        Err::<(), _>(TxError::<()>::Storage(Error::Conflict))
    });
    assert!(matches!(r, Err(TxError::Storage(Error::Conflict))), "{r:?}");
    assert_eq!(store.get(b"retry\0never").unwrap(), None);
}

/// Read-modify-write from several threads: any lost update shows as a short total.
pub fn metadata_concurrent_counter(store: &dyn MetadataStore) {
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 100;
    let key = b"counter\0n";
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for _ in 0..ROUNDS {
                    store
                        .transaction(|tx| {
                            let n = match tx.get(key)? {
                                Some(v) => u64::from_be_bytes(v.try_into().expect("8 bytes")),
                                None => 0,
                            };
                            tx.put(key, &(n + 1).to_be_bytes())?;
                            // Several keys per transaction, so a torn commit would show too.
                            tx.put(
                                format!("counter\0by\0{t}").as_bytes(),
                                &(n + 1).to_be_bytes(),
                            )?;
                            Ok::<_, TxError<()>>(())
                        })
                        .expect("increment");
                }
            });
        }
    });
    let total = store.get(key).unwrap().expect("counter written");
    assert_eq!(total, (THREADS * ROUNDS).to_be_bytes());
    assert_eq!(
        store
            .scan(b"counter\0by\0", None, usize::MAX)
            .unwrap()
            .len(),
        THREADS as usize
    );
}

/// A stream of the given chunks.
pub fn chunks<I>(parts: I) -> ByteStream
where
    I: IntoIterator,
    I::Item: Into<Bytes>,
{
    let parts: Vec<std::io::Result<Bytes>> = parts.into_iter().map(|p| Ok(p.into())).collect();
    futures_util::stream::iter(parts).boxed()
}

/// A stream that yields `good` and then fails, as a client hanging up mid-body does.
pub fn failing_after(good: Vec<u8>) -> ByteStream {
    let parts: Vec<std::io::Result<Bytes>> = vec![
        Ok(Bytes::from(good)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    futures_util::stream::iter(parts).boxed()
}

pub async fn collect(stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("read chunk"));
    }
    out
}

/// Deterministic, non-repeating-looking test data.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8 ^ seed)
        .collect()
}

async fn read(store: &dyn BlobStore, d: &Digest, range: Option<Range<u64>>) -> Option<Vec<u8>> {
    match store.read(d, range).await.expect("read") {
        Some(s) => Some(collect(s).await),
        None => None,
    }
}

/// Uploads `data` in one append and commits it under its sha256.
pub async fn put_blob(store: &dyn BlobStore, data: &[u8]) -> Digest {
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    store
        .append(&id, Some(0), chunks([data.to_vec()]))
        .await
        .unwrap();
    let d = Digest::sha256_of(data);
    assert_eq!(store.commit(&id, &d).await.unwrap(), data.len() as u64);
    d
}

/// Runs every blob check below.
pub async fn blob_suite(store: &dyn BlobStore) {
    blob_round_trip(store).await;
    blob_big_reads(store).await;
    blob_chunked_appends(store).await;
    blob_failed_append_stays_consistent(store).await;
    blob_concurrent_appends_serialize(store).await;
    blob_digest_mismatch_stores_nothing(store).await;
    blob_commit_with_other_algorithm(store).await;
    blob_unknown_sessions(store).await;
    blob_cancel(store).await;
    blob_delete(store).await;
    blob_purge(store).await;
    blob_listing(store).await;
}

async fn all_blobs(store: &dyn BlobStore) -> Vec<Digest> {
    store
        .list_blobs(None, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.digest)
        .collect()
}

/// `list_blobs` pages through every stored blob in digest order, and only stored ones.
pub async fn blob_listing(store: &dyn BlobStore) {
    let before = all_blobs(store).await;
    let mut added = Vec::new();
    for seed in 0..25u8 {
        let data = pattern(100 + seed as usize, seed.wrapping_add(100));
        added.push(put_blob(store, &data).await);
    }
    let mut want: Vec<Digest> = before.iter().chain(added.iter()).cloned().collect();
    want.sort();
    want.dedup();
    let mut got = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.list_blobs(after.as_ref(), 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        for b in page {
            assert_eq!(store.stat(&b.digest).await.unwrap(), Some(b.size));
            got.push(b.digest);
        }
    }
    assert_eq!(got, want);
    for d in &added {
        store.delete(d).await.unwrap();
    }
    let mut expect = before.clone();
    expect.retain(|d| !added.contains(d));
    // A 3-node Garage under heavy load was once seen still listing a deleted object (cause not
    // known); the listing must settle within seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = all_blobs(store).await;
        if left == expect || std::time::Instant::now() >= deadline {
            assert_eq!(left, expect);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A blob bigger than the reads a store splits it into (S3: 8 MiB ranges fetched ahead),
/// read whole and in ranges that start, end and cross inside and at those boundaries.
pub async fn blob_big_reads(store: &dyn BlobStore) {
    const MIB: usize = 1 << 20;
    let data = pattern(20 * MIB + 12_345, 9);
    let d = put_blob(store, &data).await;
    assert!(read(store, &d, None).await.unwrap() == data, "whole read");
    let len = data.len();
    for r in [
        0..8 * MIB,
        0..8 * MIB + 1,
        8 * MIB - 1..8 * MIB + 1,
        3..len - 3,
        8 * MIB..16 * MIB,
        16 * MIB - 7..len,
        len - 1..len,
    ] {
        let got = read(store, &d, Some(r.start as u64..r.end as u64)).await;
        assert!(got.as_deref() == Some(&data[r.clone()]), "range {r:?}");
    }
}

pub async fn blob_round_trip(store: &dyn BlobStore) {
    let data = pattern(300_000, 1);
    let d = Digest::sha256_of(&data);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());

    assert_eq!(put_blob(store, &data).await, d);
    assert_eq!(store.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read(store, &d, None).await.unwrap(), data);
    for r in [
        0..1,
        0..300_000,
        1..2,
        12_345..299_999,
        299_999..300_000,
        7..7,
    ] {
        let want = &data[r.start..r.end];
        let got = read(store, &d, Some(r.start as u64..r.end as u64)).await;
        assert_eq!(got.as_deref(), Some(want), "range {r:?}");
    }

    // Committing content that is already stored succeeds and changes nothing.
    assert_eq!(put_blob(store, &data).await, d);
    assert_eq!(read(store, &d, None).await.unwrap(), data);

    let empty = put_blob(store, b"").await;
    assert_eq!(store.stat(&empty).await.unwrap(), Some(0));
    assert_eq!(read(store, &empty, None).await.unwrap(), b"");
}

pub async fn blob_chunked_appends(store: &dyn BlobStore) {
    let data = pattern(3 << 20, 2);
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(0));

    // Many small chunks, more than one write batch in total.
    let small: Vec<Vec<u8>> = data[..1_500_000].chunks(1000).map(<[u8]>::to_vec).collect();
    assert_eq!(
        store.append(&id, Some(0), chunks(small)).await.unwrap(),
        1_500_000
    );

    // A chunk at the wrong offset is refused and writes nothing.
    for wrong in [0, 1_499_999, 1_500_001] {
        let r = store
            .append(&id, Some(wrong), chunks([vec![0u8; 10]]))
            .await;
        assert!(
            matches!(r, Err(Error::RangeMismatch { current: 1_500_000 })),
            "{r:?}"
        );
    }
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(1_500_000));

    // One chunk bigger than a batch, then an append without an offset, then an empty one.
    let big = data[1_500_000..3_000_000].to_vec();
    assert_eq!(
        store
            .append(&id, Some(1_500_000), chunks([big]))
            .await
            .unwrap(),
        3_000_000
    );
    let tail = data[3_000_000..].to_vec();
    let end = data.len() as u64;
    assert_eq!(store.append(&id, None, chunks([tail])).await.unwrap(), end);
    let none: [Vec<u8>; 0] = [];
    assert_eq!(
        store.append(&id, Some(end), chunks(none)).await.unwrap(),
        end
    );
    assert_eq!(store.upload_size(&id).await.unwrap(), Some(end));

    let d = Digest::sha256_of(&data);
    assert_eq!(store.commit(&id, &d).await.unwrap(), end);
    assert_eq!(store.upload_size(&id).await.unwrap(), None, "session ended");
    assert_eq!(read(store, &d, None).await.unwrap(), data);
}

/// Whatever a failed append keeps, the session's size and its eventual digest agree.
pub async fn blob_failed_append_stays_consistent(store: &dyn BlobStore) {
    let first = pattern(1000, 3);
    let sent = pattern(2 << 20, 4);
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    store
        .append(&id, Some(0), chunks([first.clone()]))
        .await
        .unwrap();
    let r = store
        .append(&id, Some(1000), failing_after(sent.clone()))
        .await;
    assert!(r.is_err(), "stream error must surface");

    let kept = store
        .upload_size(&id)
        .await
        .unwrap()
        .expect("session survives") as usize;
    let mut all = first;
    all.extend_from_slice(&sent);
    assert!((1000..=all.len()).contains(&kept), "kept {kept}");
    all.truncate(kept);
    let rest = pattern(5000, 5);
    store
        .append(&id, Some(kept as u64), chunks([rest.clone()]))
        .await
        .unwrap();
    all.extend_from_slice(&rest);
    let d = Digest::sha256_of(&all);
    assert_eq!(store.commit(&id, &d).await.unwrap(), all.len() as u64);
    assert_eq!(read(store, &d, None).await.unwrap(), all);
}

pub async fn blob_concurrent_appends_serialize(store: &dyn BlobStore) {
    let a = pattern(1_200_000, 6);
    let b = pattern(1_300_000, 7);
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    let split = |v: &[u8]| v.chunks(64 * 1024).map(<[u8]>::to_vec).collect::<Vec<_>>();
    let (ra, rb) = futures_util::future::join(
        store.append(&id, None, chunks(split(&a))),
        store.append(&id, None, chunks(split(&b))),
    )
    .await;
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let total = (a.len() + b.len()) as u64;
    assert_eq!(ra.max(rb), total);
    let ab = Digest::sha256_of(&[&a[..], &b[..]].concat());
    let ba = Digest::sha256_of(&[&b[..], &a[..]].concat());
    let expected = if ra < rb { ab } else { ba };
    assert_eq!(store.commit(&id, &expected).await.unwrap(), total);
}

pub async fn blob_digest_mismatch_stores_nothing(store: &dyn BlobStore) {
    let data = pattern(10_000, 8);
    let actual = Digest::sha256_of(&data);
    let claimed = Digest::sha256_of(b"something else");
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    store.append(&id, Some(0), chunks([data])).await.unwrap();
    match store.commit(&id, &claimed).await {
        Err(Error::DigestMismatch { computed }) => assert_eq!(computed, actual),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(store.stat(&claimed).await.unwrap(), None);
    assert_eq!(store.stat(&actual).await.unwrap(), None);
    assert_eq!(
        store.upload_size(&id).await.unwrap(),
        None,
        "session discarded"
    );
    assert!(matches!(
        store.commit(&id, &actual).await,
        Err(Error::UploadUnknown)
    ));
}

pub async fn blob_commit_with_other_algorithm(store: &dyn BlobStore) {
    let data = pattern(2_500_000, 9);
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    store
        .append(&id, None, chunks([data.clone()]))
        .await
        .unwrap();
    let d = Algorithm::Sha512.digest_of(&data);
    assert_eq!(store.commit(&id, &d).await.unwrap(), data.len() as u64);
    assert_eq!(store.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(store.stat(&Digest::sha256_of(&data)).await.unwrap(), None);
    assert_eq!(read(store, &d, Some(5..10)).await.unwrap(), &data[5..10]);

    // And the other way round.
    let id = store.create_upload(Algorithm::Sha512).await.unwrap();
    store
        .append(&id, None, chunks([data.clone()]))
        .await
        .unwrap();
    let d = Digest::sha256_of(&data);
    assert_eq!(store.commit(&id, &d).await.unwrap(), data.len() as u64);
    assert_eq!(read(store, &d, None).await.unwrap(), data);
}

pub async fn blob_unknown_sessions(store: &dyn BlobStore) {
    let id = UploadId::new();
    assert_eq!(store.upload_size(&id).await.unwrap(), None);
    assert!(matches!(
        store.append(&id, None, chunks([b"x".to_vec()])).await,
        Err(Error::UploadUnknown)
    ));
    assert!(matches!(
        store.commit(&id, &Digest::sha256_of(b"x")).await,
        Err(Error::UploadUnknown)
    ));
    assert!(!store.cancel(&id).await.unwrap());
}

pub async fn blob_cancel(store: &dyn BlobStore) {
    let data = pattern(4096, 10);
    let id = store.create_upload(Algorithm::Sha256).await.unwrap();
    store
        .append(&id, None, chunks([data.clone()]))
        .await
        .unwrap();
    assert!(store.cancel(&id).await.unwrap());
    assert!(!store.cancel(&id).await.unwrap());
    assert_eq!(store.upload_size(&id).await.unwrap(), None);
    assert!(matches!(
        store.append(&id, None, chunks([b"x".to_vec()])).await,
        Err(Error::UploadUnknown)
    ));
    let d = Digest::sha256_of(&data);
    assert!(matches!(
        store.commit(&id, &d).await,
        Err(Error::UploadUnknown)
    ));
    assert_eq!(store.stat(&d).await.unwrap(), None);
}

pub async fn blob_delete(store: &dyn BlobStore) {
    let d = put_blob(store, b"to be deleted").await;
    assert!(store.delete(&d).await.unwrap());
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());
    assert!(!store.delete(&d).await.unwrap());
    // A deleted blob can be uploaded again.
    assert_eq!(put_blob(store, b"to be deleted").await, d);
    assert_eq!(store.stat(&d).await.unwrap(), Some(13));
}

/// Expects every session opened earlier in the suite to be finished.
pub async fn blob_purge(store: &dyn BlobStore) {
    let kept_blob = put_blob(store, b"blobs are not uploads").await;
    let a = store.create_upload(Algorithm::Sha256).await.unwrap();
    let b = store.create_upload(Algorithm::Sha512).await.unwrap();
    store
        .append(&a, None, chunks([b"abc".to_vec()]))
        .await
        .unwrap();

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(store.purge_uploads(an_hour_ago).await.unwrap(), 0);
    assert_eq!(store.upload_size(&a).await.unwrap(), Some(3));

    let later = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(store.purge_uploads(later).await.unwrap(), 2);
    assert_eq!(store.upload_size(&a).await.unwrap(), None);
    assert_eq!(store.upload_size(&b).await.unwrap(), None);
    assert!(matches!(
        store.append(&a, None, chunks([b"x".to_vec()])).await,
        Err(Error::UploadUnknown)
    ));
    assert_eq!(store.purge_uploads(later).await.unwrap(), 0);
    assert!(store.stat(&kept_blob).await.unwrap().is_some());
}
