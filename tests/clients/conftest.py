"""Fixtures for berth's real-client scenarios.

Run from the repository root:   .venv/bin/pytest tests/clients -v
  REGISTRY_IMPL=berth (default)    runs <repo>/target/debug/berth serve (BERTH_BIN overrides the path)
  REGISTRY_IMPL=docker-registry    runs CNCF Distribution 2.8 instead (the peer these scenarios were
                                   validated against); berth-only checks (referrers, OCI-Subject,
                                   the "blob mounted" log line) are skipped for it
  KEEP_TMP=1                       keep the big temp dirs (logs are always under pytest's tmp dir)
  BERTH_URL=http://127.0.0.1:PORT  the session registry is this running server instead of one started
                                   here (./test.sh etcd points it at each replica of a cluster in turn);
                                   BERTH_URL_LOG names the file its log goes to (checks made on the log
                                   are skipped, and reported, without it); servers of their own (auth,
                                   TLS, the large blob...) are still started, with the environment's
                                   BERTH_* settings
  BERTH_URL_B=http://...           a second replica of BERTH_URL's deployment: test_replicas.py runs
  BERTH_TEST_NS_SUFFIX=-b          appended to the namespaces the scenarios use, so they can run again
                                   against a store that holds an earlier run's data

Fixtures:
  registry       one registry server for the whole session (host, pid, log_text(), ...)
  new_registry   a factory for a dedicated server (the large-blob test measures its own peak RSS)
  images         the busybox test images (scripts/make-test-image.sh), built once per session
  skopeo         clientlib.Skopeo bound to the session registry
  dockerd        a private Docker engine in a temp dir; DOCKER_HOST is exported while it runs
  report         lines appended here are printed in the terminal summary
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from clientlib import REPORT as _REPORT
from clientlib import REPO_ROOT, OciLayout, Registry, Skopeo, run

IMPL = os.environ.get("REGISTRY_IMPL", "berth")
BERTH_URL = os.environ.get("BERTH_URL")


def pytest_report_header(config):
    if BERTH_URL:
        return [f"registry under test: {IMPL} at {BERTH_URL} (BERTH_URL; log: {os.environ.get('BERTH_URL_LOG') or 'none'})"]
    return [f"registry under test: {IMPL}"
            + (f" ({os.environ.get('BERTH_BIN') or REPO_ROOT / 'target/debug/berth'})" if IMPL == "berth" else "")]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _REPORT:
        terminalreporter.section("berth client report")
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report():
    return _REPORT


@pytest.fixture(scope="session")
def impl() -> str:
    return IMPL


@pytest.fixture(scope="session")
def big_tmp():
    """A temp dir on a real disk for large files; removed at the end unless KEEP_TMP=1."""
    d = Path(tempfile.mkdtemp(prefix="berth-clients-", dir=os.environ.get("BERTH_TEST_TMP")))
    yield d
    if not os.environ.get("KEEP_TMP"):
        shutil.rmtree(d, ignore_errors=True)


def _start(workdir: Path, report_list: list, label: str):
    reg = Registry(IMPL, workdir).start()
    yield reg
    hwm = None
    try:
        hwm = reg.status_kib("VmHWM")
    except Exception:
        pass
    code = reg.stop()
    if hwm is not None:
        report_list.append(f"{label}: {reg.impl} pid {reg.pid} peak RSS {hwm // 1024} MiB, exit code {code},"
                           f" log {reg.log_path}")
    reg.assert_clean_exit(code)


@pytest.fixture(scope="session")
def registry(tmp_path_factory, report):
    if BERTH_URL:
        reg = Registry.remote_at(IMPL, BERTH_URL, os.environ.get("BERTH_URL_LOG"))
        report.append(f"session registry: {reg.impl} at {BERTH_URL}, started and stopped elsewhere")
        yield reg
        return
    yield from _start(tmp_path_factory.mktemp("registry"), report, "session registry")


@pytest.fixture(scope="module")
def new_registry(tmp_path_factory, report):
    """Starts a dedicated registry for one module (stopped, with the exit code asserted, at the
    module's end)."""
    gens, regs = [], []

    def start(label: str) -> Registry:
        g = _start(tmp_path_factory.mktemp("registry-" + label), report, label)
        gens.append(g)
        regs.append(next(g))
        return regs[-1]

    yield start
    errors = []
    for g in gens:
        try:
            next(g)
        except StopIteration:
            pass
        except AssertionError as e:
            errors.append(str(e))
    # Dedicated registries hold big data (the 1 GiB blob): drop it, keep the logs.
    if not os.environ.get("KEEP_TMP"):
        for reg in regs:
            shutil.rmtree(reg.data_dir, ignore_errors=True)
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> OciLayout:
    """OCI layout with refs busybox (linux/amd64), busybox-arm64, multi (an index over both)."""
    path = tmp_path_factory.mktemp("images") / "layout"
    run([REPO_ROOT / "scripts" / "make-test-image.sh", path], timeout=120)
    layout = OciLayout(path)
    assert layout.config("busybox")["architecture"] == "amd64"
    assert layout.config("busybox-arm64")["architecture"] == "arm64"
    return layout


@pytest.fixture(scope="session")
def skopeo(registry) -> Skopeo:
    return Skopeo(registry)


class Dockerd:
    def __init__(self, root: Path):
        self.root = root
        self.sock = root / "dk.sock"
        self.host = f"unix://{self.sock}"
        self.log_path = root / "dockerd.log"
        self.proc = None
        # Debian's CLI matches the engine (20.10); another docker CLI on PATH may be newer.
        self.cli = "/usr/bin/docker" if os.access("/usr/bin/docker", os.X_OK) else (shutil.which("docker") or "docker")

    def start(self):
        binary = shutil.which("dockerd")
        assert binary, "dockerd not found (apt-get install docker.io, or scripts/install-deps.sh)"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "--storage-driver=vfs", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--ip-forward=false", "--ip-masq=false", "--data-root", self.root / "data",
             "--exec-root", self.root / "exec", "--pidfile", self.root / "dk.pid", "-H", self.host],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            if self.sock.exists() and run([self.cli, "version"], check=False, env=self.env(), timeout=20).returncode == 0:
                return self
            time.sleep(0.3)
        raise AssertionError(f"dockerd not ready after 60 s:\n{self.log_path.read_text()[-4000:]}")

    def env(self) -> dict:
        return {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(self.root / "config")}

    def docker(self, *args, **kw):
        return run([self.cli, *args], env=self.env(), **kw)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def dockerd():
    # A short path: the daemon's unix sockets (and containerd's under exec-root) must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="bdk-", dir="/tmp"))
    d = Dockerd(root)
    saved = os.environ.get("DOCKER_HOST")
    try:
        d.start()
        os.environ["DOCKER_HOST"] = d.host
        yield d
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        d.stop()
        if not os.environ.get("KEEP_TMP"):
            # vfs layers can hold read-only dirs; best effort.
            subprocess.run(["rm", "-rf", str(root)], check=False)
