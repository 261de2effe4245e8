//! Real etcd members on 127.0.0.1 for tests: Debian's `etcd` binary (package `etcd-server`, or
//! `ETCD_BIN`), each member with its own temporary data directory and free ports, stopped by
//! PID when the cluster is dropped. A missing binary is a test failure, not a skip.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdCluster {
    members: Vec<Member>,
    /// Unique per cluster: members of two clusters never join each other.
    token: String,
    _dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

pub fn binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdCluster {
    /// `count` members. `fsync: false` passes `--unsafe-no-fsync` (faster; only for tests that
    /// do not kill members and check what survived).
    pub fn start(count: usize, fsync: bool) -> EtcdCluster {
        assert!(
            binary().exists(),
            "{} missing: run scripts/install-deps.sh (Debian's etcd-server) or set ETCD_BIN",
            binary().display()
        );
        let dir = tempfile::tempdir().unwrap();
        let token = format!("berth-test-{}", uuid::Uuid::new_v4().simple());
        for attempt in 0.. {
            let mut cluster = EtcdCluster {
                members: (0..count)
                    .map(|n| Member {
                        name: format!("m{n}"),
                        client_port: free_port(),
                        peer_port: free_port(),
                        data: dir.path().join(format!("a{attempt}-m{n}")),
                        log: dir.path().join(format!("a{attempt}-m{n}.log")),
                        child: None,
                    })
                    .collect(),
                token: token.clone(),
                _dir: tempfile::tempdir().unwrap(),
            };
            for n in 0..count {
                cluster.spawn(n, "new", fsync);
            }
            // A picked port may be taken before the member binds it (suites run alongside):
            // a member that exits at once means new ports.
            std::thread::sleep(Duration::from_millis(300));
            let exited = cluster
                .members
                .iter_mut()
                .any(|m| matches!(m.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_)))));
            if exited {
                assert!(
                    attempt < 4,
                    "etcd keeps exiting at start: {}",
                    cluster.logs()
                );
                continue;
            }
            cluster._dir = dir;
            cluster.wait_healthy(Duration::from_secs(30));
            return cluster;
        }
        unreachable!()
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, n: usize, state: &str, fsync: bool) {
        let initial = self.initial_cluster();
        let m = &mut self.members[n];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(binary());
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &initial,
                "--initial-cluster-token",
                &self.token,
            ])
            .args(["--initial-cluster-state", state])
            // Elections settle quickly on a loaded 2-core machine without flapping.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&m.log).unwrap());
        if !fsync {
            cmd.arg("--unsafe-no-fsync");
        }
        m.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("starting etcd: {e}")));
    }

    fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- {}:\n{}",
                    m.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every running member answers its health endpoint with a leader known.
    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for m in self.members.iter().filter(|m| m.child.is_some()) {
            loop {
                if healthy(m.client_port) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} not healthy in {within:?}:\n{}",
                    m.name,
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `host:port` of every member (running or not), for an `etcd://` URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// `etcd://` URL of every member, with the given key prefix.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}/{prefix}", self.endpoints().join(","))
    }

    pub fn pid(&self, n: usize) -> Option<u32> {
        self.members[n].child.as_ref().map(Child::id)
    }

    /// Kills member `n` with SIGKILL, as a machine dying would.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.members[n].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `n` again on its data directory (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, n: usize) {
        assert!(self.members[n].child.is_none(), "member {n} is running");
        self.spawn(n, "existing", true);
    }

    /// The member that is the leader now, from `etcdctl endpoint status`.
    pub fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| {
            let Some(_) = m.child else { return false };
            let out = Command::new("etcdctl")
                .args(["--endpoints", &format!("127.0.0.1:{}", m.client_port)])
                .args(["endpoint", "status", "--write-out", "json"])
                .env("ETCDCTL_API", "3")
                .output();
            let Ok(out) = out else { return false };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                return false;
            };
            let status = &v[0]["Status"];
            status["leader"].as_u64().is_some()
                && status["leader"].as_u64() == status["header"]["member_id"].as_u64()
        })
    }
}

/// One `GET /health` over plain TCP: etcd answers `{"health":"true"}` once it has a leader.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
