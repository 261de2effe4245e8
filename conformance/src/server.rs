//! Starts `berth serve` on a free port with a fresh data directory and finds
//! the bound address in its log.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Server {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Runs `<bin> serve --listen 127.0.0.1:0 --data-dir <tmp>/data`, stderr
    /// copied to `<tmp>/berth.log`, and waits for `listening addr=<addr>`.
    pub fn start(bin: &Path) -> Result<Server, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("berth-conformance-{}-{nanos}", std::process::id()));
        let data = dir.join("data");
        fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        let log = dir.join("berth.log");
        let mut log_file =
            File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;

        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");

        // Drain stderr for the whole run: a full pipe would block the server.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if let Some(addr) = listening_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });

        let mut server = Server {
            child,
            addr: String::new(),
            dir,
            log,
        };
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr;
                Ok(server)
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stderr closed without the line: berth most likely exited.
                let mut status = "closed stderr without a `listening addr=` line".to_string();
                for _ in 0..20 {
                    if let Ok(Some(st)) = server.child.try_wait() {
                        status = format!("exited with {st}");
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                Err(format!(
                    "berth did not start: {status}; log: {}",
                    server.log.display()
                ))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let status = format!("no `listening addr=` line within {STARTUP_TIMEOUT:?}");
                Err(format!(
                    "berth did not start: {status}; log: {}",
                    server.log.display()
                ))
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `listening addr=` in a log line, ANSI colours removed.
fn listening_addr(line: &str) -> Option<String> {
    let plain = strip_ansi(line);
    let rest = &plain[plain.find("listening addr=")? + "listening addr=".len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (!addr.is_empty()).then_some(addr)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // Skip parameters up to and including the final byte (@..~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plain_addr() {
        let line = "2026-01-01T00:00:00Z  INFO berth::server: listening addr=127.0.0.1:41234";
        assert_eq!(listening_addr(line).as_deref(), Some("127.0.0.1:41234"));
    }

    #[test]
    fn finds_coloured_addr() {
        let line = "\x1b[32m INFO\x1b[0m \x1b[2mberth::server\x1b[0m\x1b[2m:\x1b[0m listening \
                    \x1b[3maddr\x1b[0m\x1b[2m=\x1b[0m127.0.0.1:5000 more";
        assert_eq!(listening_addr(line).as_deref(), Some("127.0.0.1:5000"));
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(listening_addr("INFO berth: starting"), None);
    }
}
