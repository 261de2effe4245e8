//! Starting the two registries on free loopback ports with fresh data directories, and reading
//! their memory high-water marks.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which registry a server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Berth,
    Peer,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Peer => "docker-registry",
        }
    }
}

/// A running registry; killed on drop.
pub struct Server {
    pub kind: Kind,
    pub base: String,
    child: Child,
    pid: u32,
    /// Kept so the directory outlives the process.
    data: tempfile::TempDir,
    /// The last lines the server wrote, for error reports.
    log_tail: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// The registry's own process: under a wrapper that forks (perf, strace), the wrapper's
    /// child rather than the wrapper.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `(VmHWM, VmRSS)` in bytes.
    pub fn memory(&self) -> (u64, u64) {
        memory_of(self.pid())
    }

    pub fn log_tail(&self) -> String {
        self.log_tail
            .lock()
            .map(|l| l.join("\n"))
            .unwrap_or_default()
    }

    /// The server's data directory (berth's `--data-dir`, the peer's storage root).
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    /// SIGTERM (both registries drain and exit; a profiler wrapping berth writes its output),
    /// then SIGKILL after 10 s.
    fn drop(&mut self) {
        // The registry first: a wrapper then finishes its output and exits by itself.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if self.pid != self.child.id() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline
                && std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(VmHWM, VmRSS)` in bytes from `/proc/PID/status`; zeros once the process is gone.
pub fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A child process of `parent`, from `/proc/*/stat` (field 4 is the parent's pid).
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

/// Keeps reading a child's output so it never blocks on a full pipe; remembers the last lines
/// and hands each line to `on_line` until it returns false.
fn drain(
    out: impl std::io::Read + Send + 'static,
    tail: Arc<Mutex<Vec<String>>>,
    mut on_line: impl FnMut(&str) -> bool + Send + 'static,
) {
    std::thread::spawn(move || {
        let mut watching = true;
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if watching {
                watching = on_line(&line);
            }
            if let Ok(mut t) = tail.lock() {
                t.push(line);
                if t.len() > 40 {
                    t.remove(0);
                }
            }
        }
    });
}

fn fresh_dir(work: &Path, prefix: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir_in(work)
}

/// Starts `berth serve` on 127.0.0.1:0 and waits for its `listening addr=` line.
/// `wrapper` (e.g. `valgrind --tool=massif`) is put in front of the command, for profiling;
/// `extra` goes after the standard flags (a workload's own settings).
pub fn start_berth(
    bin: &Path,
    work: &Path,
    wrapper: &[String],
    extra: &[&str],
) -> Result<Server, String> {
    start_berth_env(bin, work, wrapper, extra, &[])
}

/// [`start_berth`] with extra environment (workload 12's S3 credentials).
pub fn start_berth_env(
    bin: &Path,
    work: &Path,
    wrapper: &[String],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<Server, String> {
    let data = fresh_dir(work, "bench-berth-").map_err(|e| e.to_string())?;
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path().join("data"))
        // Workload 10's webhook receiver listens on loopback.
        .arg("--webhook-allow-private")
        .args(extra)
        // Like the peer's `log.level: warn` with the access log off: no line per request. The
        // startup line still comes through.
        .env("RUST_LOG", "info,berth::access=warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    drain(
        child.stderr.take().expect("stderr"),
        tail.clone(),
        move |line| {
            if let Some(rest) = line.split("listening addr=").nth(1) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let _ = tx.send(addr);
                return false;
            }
            true
        },
    );
    let pid = child.id();
    let mut server = Server {
        kind: Kind::Berth,
        base: String::new(),
        child,
        pid,
        data,
        log_tail: tail,
    };
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(addr) => {
            server.base = format!("http://{addr}");
            if !wrapper.is_empty() {
                if let Some(pid) = child_of(server.child.id()) {
                    server.pid = pid;
                }
            }
            Ok(server)
        }
        Err(_) => Err(format!(
            "berth did not log `listening addr=` within 120 s:\n{}",
            server.log_tail()
        )),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts CNCF Distribution (`docker-registry serve config.yml`) and waits until `/v2/` answers.
pub fn start_peer(bin: &Path, work: &Path) -> Result<Server, String> {
    start_peer_with(bin, work, |root| {
        format!("  filesystem:\n    rootdirectory: {}\n", root.display())
    })
}

/// [`start_peer`] with another storage driver: `driver(root)` is the YAML under `storage:`
/// (two-space indented) naming it, `root` being the server's own data directory.
pub fn start_peer_with(
    bin: &Path,
    work: &Path,
    driver: impl FnOnce(&Path) -> String,
) -> Result<Server, String> {
    let data = fresh_dir(work, "bench-peer-").map_err(|e| e.to_string())?;
    let port = free_port().map_err(|e| e.to_string())?;
    let root = data.path().join("data");
    std::fs::create_dir_all(&root).map_err(|e| e.to_string())?;
    // The packaged configuration without its htpasswd auth and health checker: the in-memory
    // blob-descriptor cache, deletes on, warnings only, no access log.
    let config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  cache:\n    blobdescriptor: inmemory\n{}  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        driver(&root)
    );
    let config_path: PathBuf = data.path().join("config.yml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .arg("serve")
        .arg(&config_path)
        // Its S3 driver (aws-sdk-go) panics at startup when AWS_CA_BUNDLE is set, as it is on
        // some CI machines; workload 12 gives it credentials in its config, not from here.
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    drain(child.stderr.take().expect("stderr"), tail.clone(), |_| {
        false
    });
    drain(child.stdout.take().expect("stdout"), tail.clone(), |_| {
        false
    });
    let pid = child.id();
    let mut server = Server {
        kind: Kind::Peer,
        base: format!("http://127.0.0.1:{port}"),
        child,
        pid,
        data,
        log_tail: tail,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{}/v2/", server.base);
    while Instant::now() < deadline {
        if !server.alive() {
            return Err(format!("docker-registry exited:\n{}", server.log_tail()));
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            let req = "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let mut answer = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut answer).is_ok()
                && answer.starts_with("HTTP/1.1 200")
            {
                return Ok(server);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "docker-registry did not answer {url} within 30 s:\n{}",
        server.log_tail()
    ))
}
