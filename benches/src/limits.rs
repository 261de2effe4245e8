//! What the machine allows, measured by the same tool: SHA-256 on one core, sequential write
//! with fsync on the data directories' filesystem, and loopback TCP.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::random_bytes;
use crate::stats::median;

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    /// MB/s (10^6 bytes) of one core hashing SHA-256.
    pub sha256_mb_s: f64,
    /// MB/s of writing a file sequentially in 8 MiB writes and fsyncing it.
    pub fsync_write_mb_s: f64,
    /// MB/s of one loopback TCP connection.
    pub loopback_tcp_mb_s: f64,
}

fn mb_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn sha256(buf: &[u8]) -> f64 {
    let t = Instant::now();
    std::hint::black_box(Sha256::digest(buf));
    mb_s(buf.len(), t.elapsed().as_secs_f64())
}

fn fsync_write(dir: &Path, buf: &[u8]) -> std::io::Result<f64> {
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    let t = Instant::now();
    for chunk in buf.chunks(8 << 20) {
        file.write_all(chunk)?;
    }
    file.as_file().sync_all()?;
    Ok(mb_s(buf.len(), t.elapsed().as_secs_f64()))
}

async fn loopback(total: usize) -> std::io::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut seen = 0usize;
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            seen += n;
        }
        Ok::<usize, std::io::Error>(seen)
    });
    let chunk = random_bytes(3, 1 << 20);
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut sent = 0usize;
    while sent < total {
        s.write_all(&chunk).await?;
        sent += chunk.len();
    }
    s.shutdown().await?;
    drop(s);
    let seen = reader.await.map_err(std::io::Error::other)??;
    Ok(mb_s(seen, t.elapsed().as_secs_f64()))
}

/// Medians of three runs of each.
pub async fn measure(dir: &Path, quick: bool) -> std::io::Result<Limits> {
    let size = if quick { 128 << 20 } else { 1 << 30 };
    let buf = random_bytes(1, size);
    let mut sha = Vec::new();
    let mut write = Vec::new();
    let mut tcp = Vec::new();
    for _ in 0..3 {
        sha.push(sha256(&buf));
        write.push(fsync_write(dir, &buf)?);
        tcp.push(loopback(size * 4).await?);
    }
    Ok(Limits {
        sha256_mb_s: median(&sha),
        fsync_write_mb_s: median(&write),
        loopback_tcp_mb_s: median(&tcp),
    })
}
