"""Helpers for berth's real-client scenarios (tests/clients).

Everything here drives real programs or speaks the distribution API over HTTP on 127.0.0.1:

* ``run``            runs a command; on failure the assertion shows the command, exit code, stdout
                     and stderr.
* ``Registry``       a registry process under test (berth, or CNCF Distribution as the peer that
                     the scenarios were validated against), with its log captured to a file; or
                     (``Registry.remote``) a server something else started and stops.
* ``OciLayout``      reads an OCI image layout on disk (index.json, blobs).
* ``build_layout``   writes a real OCI image (gzip tar layers, config, manifest) by hand.
* ``check_image``    fetches a manifest, its config and every layer over HTTP and checks digests,
                     sizes and diff_ids: the content check every scenario ends with.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tarfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LISTENING_RE = re.compile(r"listening addr=(127\.0\.0\.1:\d+)")

# Lines printed in pytest's terminal summary (see conftest.pytest_terminal_summary).
REPORT: list[str] = []

# Appended to every namespace the scenarios use, so they can run more than once against one
# store: ./test.sh etcd runs them through two replicas that share theirs, and a second run would
# otherwise meet the first one's tags and history.
NS_SUFFIX = os.environ.get("BERTH_TEST_NS_SUFFIX", "")


def ns(name: str) -> str:
    """The namespace `name` of this run (see NS_SUFFIX)."""
    return name + NS_SUFFIX


def log_checked(reg: "Registry", what: str) -> bool:
    """True when the registry's log can be read. A server started elsewhere (BERTH_URL) without
    its log file (BERTH_URL_LOG) has none here: notes in the report that a check made on the log
    was not made, and returns False."""
    if reg.has_log:
        return True
    REPORT.append(f"not checked (no log of the server at {reg.host}; set BERTH_URL_LOG): {what}")
    return False


def berth_only(reg: "Registry", what: str) -> bool:
    """True on berth. On another registry, notes in the report that a berth-only check (an API or
    log line that registry lacks) was not made, and returns False."""
    if reg.is_berth:
        return True
    REPORT.append(f"not checked on {reg.impl} (berth-only): {what}")
    return False


# ---- running commands ---------------------------------------------------------------------------

class CommandFailed(AssertionError):
    pass


def _describe(cmd, rc, out, err, note=""):
    def clip(s: str) -> str:
        s = s or ""
        return s if len(s) < 20000 else s[:4000] + "\n...[clipped]...\n" + s[-12000:]

    return (
        f"command {'failed' if not note else note}: {shlex.join(str(c) for c in cmd)}\n"
        f"exit code: {rc}\n--- stdout ---\n{clip(out)}\n--- stderr ---\n{clip(err)}"
    )


def run(cmd: Iterable, *, check: bool = True, timeout: float = 180, env: Optional[dict] = None,
        cwd=None, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs cmd (a list), capturing text output. With check (default) a non-zero exit raises an
    AssertionError that carries the full command, exit code, stdout and stderr."""
    cmd = [str(c) for c in cmd]
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                              cwd=cwd, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        raise CommandFailed(_describe(cmd, "timeout", out, err, note=f"timed out after {timeout}s")) from None
    if check and proc.returncode != 0:
        raise CommandFailed(_describe(cmd, proc.returncode, proc.stdout, proc.stderr))
    return proc


def run_fails(cmd: Iterable, **kw) -> subprocess.CompletedProcess:
    """Runs cmd and asserts that it exits non-zero (for 'this must no longer work' checks)."""
    proc = run(cmd, check=False, **kw)
    if proc.returncode == 0:
        raise AssertionError(_describe(list(cmd), 0, proc.stdout, proc.stderr,
                                       note="succeeded but was expected to fail"))
    return proc


def berth_binary() -> str:
    """The berth binary under test, as an absolute path (the server runs in its own directory)."""
    binary = str(Path(os.environ.get("BERTH_BIN") or REPO_ROOT / "target" / "debug" / "berth").resolve())
    if not os.access(binary, os.X_OK):
        raise AssertionError(f"berth binary not found at {binary} (cargo build first, or set BERTH_BIN)")
    return binary


# ---- hashing ------------------------------------------------------------------------------------

def sha256_bytes(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def sha256_file(path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- OCI image layouts --------------------------------------------------------------------------

class OciLayout:
    """Read access to an OCI image layout directory."""

    REF = "org.opencontainers.image.ref.name"

    def __init__(self, path):
        self.path = Path(path)

    def index(self) -> dict:
        return json.loads((self.path / "index.json").read_text())

    def descriptor(self, ref: str) -> dict:
        for m in self.index()["manifests"]:
            if (m.get("annotations") or {}).get(self.REF) == ref:
                return m
        raise AssertionError(f"{self.path}: no reference {ref!r} in index.json: {self.index()}")

    def digest(self, ref: str) -> str:
        return self.descriptor(ref)["digest"]

    def blob_path(self, digest: str) -> Path:
        algo, hexd = digest.split(":", 1)
        return self.path / "blobs" / algo / hexd

    def blob(self, digest: str) -> bytes:
        data = self.blob_path(digest).read_bytes()
        assert sha256_bytes(data) == digest, f"{self.path}: blob {digest} is corrupt on disk"
        return data

    def json_blob(self, digest: str) -> dict:
        return json.loads(self.blob(digest))

    def manifest(self, ref_or_digest: str) -> dict:
        d = ref_or_digest if ref_or_digest.startswith("sha256:") else self.digest(ref_or_digest)
        return self.json_blob(d)

    def config(self, ref_or_digest: str) -> dict:
        return self.json_blob(self.manifest(ref_or_digest)["config"]["digest"])


@dataclass
class LayerSpec:
    """A layer of files. files maps a path inside the image to bytes; random_files maps a path to
    a size of random content generated while writing (for large layers)."""
    files: dict = field(default_factory=dict)
    random_files: dict = field(default_factory=dict)
    compresslevel: int = 6


class _GzipStored:
    """A gzip stream of stored (uncompressed) deflate blocks: what zlib level 0 makes, several
    times faster in pure Python (no copy through the deflate engine). Same interface as
    zlib.compressobj: compress(data) -> bytes, flush() -> bytes."""

    BLOCK = 65535

    def __init__(self):
        self.crc = 0
        self.isize = 0
        self.started = False

    def compress(self, data: bytes) -> bytes:
        self.crc = zlib.crc32(data, self.crc)
        self.isize += len(data)
        parts = []
        if not self.started:
            # magic, CM=deflate, no flags, mtime 0, XFL 0, OS 255 (unknown)
            parts.append(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
            self.started = True
        view = memoryview(data)
        for i in range(0, len(data), self.BLOCK):
            block = view[i:i + self.BLOCK]
            n = len(block)
            parts.append(b"\x00" + n.to_bytes(2, "little") + (n ^ 0xFFFF).to_bytes(2, "little"))
            parts.append(block)
        return b"".join(parts)

    def flush(self) -> bytes:
        head = b"" if self.started else b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
        # An empty final stored block, then CRC32 and ISIZE.
        return (head + b"\x01\x00\x00\xff\xff" + self.crc.to_bytes(4, "little")
                + (self.isize & 0xFFFFFFFF).to_bytes(4, "little"))


def _write_layer(layout: Path, spec: LayerSpec) -> tuple[dict, str]:
    """Writes one gzip tar layer into layout/blobs; returns (descriptor, diff_id).

    The tar stream is written by hand (512-byte headers from tarfile, data in 4 MiB chunks) and
    compressed with zlib in gzip mode, so a 1 GiB layer costs little more than os.urandom and two
    sha256 passes."""
    chunk = 4 << 20
    tmp = layout / "blobs" / "sha256" / f".tmp-{os.getpid()}-{threading.get_ident()}"
    if spec.compresslevel == 0:
        gz = _GzipStored()
    else:
        gz = zlib.compressobj(spec.compresslevel, zlib.DEFLATED, 31)  # wbits 31: gzip, mtime 0
    outer, inner = hashlib.sha256(), hashlib.sha256()
    size = 0
    with open(tmp, "wb") as f:
        def emit(data: bytes):
            nonlocal size
            inner.update(data)
            out = gz.compress(data)
            if out:
                outer.update(out)
                f.write(out)
                size += len(out)

        def header(name: str, kind, length: int = 0):
            ti = tarfile.TarInfo(name)
            ti.type, ti.size, ti.mtime = kind, length, 0
            ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            emit(ti.tobuf(format=tarfile.PAX_FORMAT))

        def pad(length: int):
            if length % 512:
                emit(b"\0" * (512 - length % 512))

        dirs = set()
        for name in list(spec.files) + list(spec.random_files):
            parts = name.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    header(d + "/", tarfile.DIRTYPE)
        for name, data in spec.files.items():
            header(name.strip("/"), tarfile.REGTYPE, len(data))
            emit(data)
            pad(len(data))
        for name, length in spec.random_files.items():
            header(name.strip("/"), tarfile.REGTYPE, length)
            left = length
            while left:
                n = min(chunk, left)
                emit(os.urandom(n))
                left -= n
            pad(length)
        emit(b"\0" * 1024)  # end of archive
        tail = gz.flush()
        outer.update(tail)
        f.write(tail)
        size += len(tail)
    digest, diff_id = "sha256:" + outer.hexdigest(), "sha256:" + inner.hexdigest()
    os.rename(tmp, layout / "blobs" / "sha256" / digest.split(":")[1])
    return {"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": size}, diff_id


def _put_blob(layout: Path, data: bytes) -> str:
    d = sha256_bytes(data)
    (layout / "blobs" / "sha256" / d.split(":")[1]).write_bytes(data)
    return d


def build_layout(path, images: dict, *, arch: str = "amd64") -> OciLayout:
    """Writes (or extends) an OCI image layout at path. images maps a ref name to a list of
    LayerSpec; each becomes a linux/<arch> image with those layers. Identical layer specs give
    identical blobs (tar and gzip headers carry no timestamps)."""
    layout = Path(path)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    for ref, layers in images.items():
        descs, diff_ids = [], []
        for spec in layers:
            desc, diff_id = _write_layer(layout, spec)
            descs.append(desc)
            diff_ids.append(diff_id)
        config = json.dumps({
            "architecture": arch, "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Labels": {"berth.test.ref": ref}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"berth tests: layer {i}"} for i in range(len(descs))],
        }, separators=(",", ":")).encode()
        config_digest = _put_blob(layout, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": descs,
        }, separators=(",", ":")).encode()
        manifest_digest = _put_blob(layout, manifest)
        index["manifests"] = [m for m in index["manifests"]
                              if (m.get("annotations") or {}).get(OciLayout.REF) != ref]
        index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": manifest_digest,
                                   "size": len(manifest), "annotations": {OciLayout.REF: ref}})
    index_path.write_text(json.dumps(index))
    return OciLayout(layout)


def tar_members(blob: bytes) -> dict:
    """Regular files of a (gzip) tar layer blob: path -> bytes."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        for m in tar:
            if m.isfile():
                out[m.name.lstrip("./")] = tar.extractfile(m).read()
    return out


def diff_id_of(blob: bytes) -> str:
    """sha256 of the uncompressed tar (a layer's diff_id)."""
    if blob[:2] == b"\x1f\x8b":
        blob = gzip.decompress(blob)
    return sha256_bytes(blob)


# ---- registry processes -------------------------------------------------------------------------

class Registry:
    """A registry process listening on 127.0.0.1, its log drained into log_path."""

    def __init__(self, impl: str, workdir: Path, extra_args: Iterable = (), env: Optional[dict] = None):
        self.impl = impl
        self.extra_args = [str(a) for a in extra_args]  # appended to `berth serve`
        self.extra_env = dict(env or {})  # added to the server's environment (e.g. BERTH_ADMIN_PASSWORD)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{impl}.log"
        self.data_dir = self.workdir / "data"
        self.proc: Optional[subprocess.Popen] = None
        self.host: Optional[str] = None
        self._listening = threading.Event()
        self._drain: Optional[threading.Thread] = None
        self.exit_code: Optional[int] = None
        self.remote = False

    @classmethod
    def remote_at(cls, impl: str, url: str, log_path: Optional[str] = None) -> "Registry":
        """A server already listening at url (http://host:port), which something else started and
        stops; log_path, when given, is the file its log goes to."""
        m = re.fullmatch(r"http://([^/]+)/?", url)
        if not m:
            raise AssertionError(f"BERTH_URL must be http://host:port, not {url!r}")
        reg = cls.__new__(cls)
        reg.impl = impl
        reg.extra_args, reg.extra_env = [], {}
        reg.workdir = reg.data_dir = None
        reg.log_path = Path(log_path) if log_path else None
        reg.proc, reg._drain, reg.exit_code = None, None, None
        reg._listening = threading.Event()
        reg.host = m.group(1)
        reg.remote = True
        try:
            r = requests.get(reg.url("/v2/"), timeout=10)
        except requests.RequestException as e:
            raise AssertionError(f"no registry answers at {url}: {e}") from None
        assert r.status_code == 200, f"GET {url}/v2/: {r.status_code} {r.text[:500]}"
        return reg

    @property
    def is_berth(self) -> bool:
        return self.impl == "berth"

    @property
    def has_log(self) -> bool:
        return self.log_path is not None

    @property
    def pid(self) -> int:
        if self.remote:
            raise AssertionError(f"the server at {self.host} was started elsewhere: no pid here")
        return self.proc.pid

    # -- lifecycle

    def start(self, timeout: float = 60) -> "Registry":
        assert not self.remote, f"the server at {self.host} was started elsewhere"
        env = dict(os.environ)
        env.update(self.extra_env)
        env.setdefault("NO_COLOR", "1")
        if self.is_berth:
            env.setdefault("RUST_LOG", "info")
            binary = berth_binary()
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # The import peers (docker-registry) listen on 127.0.0.1 over plain HTTP: loopback
            # sources need an allowed_registries_for_import entry naming them.
            cmd = [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
                   "--allow-insecure-import-from", "127.0.0.1:*", *self.extra_args]
        elif self.impl == "docker-registry":
            port = free_port()
            cfg = self.workdir / "config.yml"
            cfg.write_text(
                "version: 0.1\n"
                "log: {level: info, formatter: text}\n"
                "storage:\n"
                f"  filesystem: {{rootdirectory: {self.data_dir}}}\n"
                "  delete: {enabled: true}\n"
                f"http: {{addr: 127.0.0.1:{port}}}\n")
            cmd = [os.environ.get("DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry"), "serve", str(cfg)]
            self.host = f"127.0.0.1:{port}"
        else:
            raise AssertionError(f"unknown REGISTRY_IMPL {self.impl!r} (berth or docker-registry)")

        self.cmd = cmd
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        self._drain = threading.Thread(target=self._drain_output, daemon=True)
        self._drain.start()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._drain.join(5)
                raise AssertionError(f"{self.impl} exited with {self.proc.returncode} before listening:\n"
                                     f"{shlex.join(cmd)}\n--- log ---\n{self.log_text()}")
            if self.is_berth:
                if self._listening.wait(0.1):
                    break
            else:
                try:
                    if requests.get(self.url("/v2/"), timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.1)
        else:
            self.proc.kill()
            raise AssertionError(f"{self.impl} did not start listening within {timeout}s:\n"
                                 f"{shlex.join(cmd)}\n--- log ---\n{self.log_text()}")
        return self

    def _drain_output(self):
        for line in iter(self.proc.stdout.readline, b""):
            self._log_file.write(line)
            self._log_file.flush()
            if not self._listening.is_set():
                m = LISTENING_RE.search(ANSI_RE.sub("", line.decode(errors="replace")))
                if m:
                    self.host = m.group(1)
                    self._listening.set()
        self._log_file.close()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait; returns the exit code (SIGKILL and raise if it does not exit)."""
        assert not self.remote, f"the server at {self.host} was started elsewhere: it is not stopped here"
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.impl} (pid {self.pid}) did not exit within {timeout}s of SIGTERM")
        finally:
            if self._drain:
                self._drain.join(10)
        return self.exit_code

    def assert_clean_exit(self, code: int):
        # Distribution 2.8 does not trap SIGTERM (it dies of the signal); berth must exit 0.
        ok = (0,) if self.is_berth else (0, -signal.SIGTERM)
        assert code in ok, (f"{self.impl} exited with {code} after SIGTERM (expected {ok});"
                            f" log tail:\n{self.log_text()[-4000:]}")

    # -- observation

    def log_text(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return ANSI_RE.sub("", self.log_path.read_bytes().decode(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        return len(self.log_text())

    def log_since(self, mark: int) -> str:
        return self.log_text()[mark:]

    def status_kib(self, field_name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise AssertionError(f"{field_name} not in /proc/{self.pid}/status")

    # -- HTTP

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, requests.Response]:
        r = requests.get(self.url(f"/v2/{repo}/manifests/{ref}"),
                         headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}, timeout=30)
        assert r.status_code == 200, f"GET /v2/{repo}/manifests/{ref}: {r.status_code} {r.text}"
        return r.content, r

    def get_blob(self, repo: str, digest: str) -> bytes:
        r = requests.get(self.url(f"/v2/{repo}/blobs/{digest}"), timeout=120)
        assert r.status_code == 200, f"GET /v2/{repo}/blobs/{digest}: {r.status_code} {r.text[:500]}"
        assert sha256_bytes(r.content) == digest, f"blob {digest} from {repo}: content hashes differently"
        return r.content


def media_type_of(reg: Registry, repo: str, ref: str) -> str:
    """The manifest's mediaType field, or (when the manifest omits it, as umoci and podman's OCI
    manifests do) the Content-Type the registry serves it with."""
    body, resp = reg.get_manifest(repo, ref)
    return json.loads(body).get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0].strip()


def check_image(reg: Registry, repo: str, ref: str, *, expect_digest: Optional[str] = None,
                expect_diff_ids: Optional[list] = None, expect_arch: Optional[str] = None) -> tuple[str, dict]:
    """Pulls a manifest (or, for an index, each child) with its config and layers over HTTP and
    checks digests, sizes, Docker-Content-Digest and (optionally) diff_ids and architecture.
    Returns (manifest digest, manifest)."""
    body, resp = reg.get_manifest(repo, ref)
    digest = sha256_bytes(body)
    header = resp.headers.get("Docker-Content-Digest")
    assert header in (None, digest), f"{repo}:{ref}: Docker-Content-Digest {header} != sha256 of body {digest}"
    if expect_digest:
        assert digest == expect_digest, f"{repo}:{ref}: manifest digest {digest}, expected {expect_digest}"
    if ref.startswith("sha256:"):
        assert digest == ref, f"{repo}@{ref}: served bytes hash to {digest}"
    m = json.loads(body)
    media_type = m.get("mediaType") or resp.headers.get("Content-Type", "").split(";")[0].strip()
    if "manifests" in m and not m.get("mediaType"):
        media_type = OCI_INDEX
    if media_type in INDEX_TYPES:
        for child in m["manifests"]:
            check_image(reg, repo, child["digest"],
                        expect_arch=(child.get("platform") or {}).get("architecture"))
        return digest, m
    config_blob = reg.get_blob(repo, m["config"]["digest"])
    assert len(config_blob) == m["config"]["size"], f"{repo}:{ref}: config size mismatch"
    config = json.loads(config_blob)
    diff_ids = []
    for layer in m["layers"]:
        blob = reg.get_blob(repo, layer["digest"])
        assert len(blob) == layer["size"], f"{repo}:{ref}: layer {layer['digest']} size {len(blob)} != {layer['size']}"
        diff_ids.append(diff_id_of(blob))
    assert diff_ids == config["rootfs"]["diff_ids"], f"{repo}:{ref}: layers do not match config diff_ids"
    if expect_diff_ids is not None:
        assert diff_ids == expect_diff_ids, f"{repo}:{ref}: diff_ids {diff_ids} != expected {expect_diff_ids}"
    if expect_arch:
        assert config["architecture"] == expect_arch, f"{repo}@{digest}: arch {config['architecture']} != {expect_arch}"
    return digest, m


# ---- skopeo -------------------------------------------------------------------------------------

class Skopeo:
    """skopeo against a plain-HTTP registry (TLS verification off for docker:// references)."""

    def __init__(self, reg: Registry):
        self.reg = reg

    def ref(self, repo_ref: str) -> str:
        return f"docker://{self.reg.host}/{repo_ref}"

    def copy(self, src: str, dst: str, *extra, timeout: float = 180) -> subprocess.CompletedProcess:
        return run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst],
                   timeout=timeout)

    def copy_cmd(self, src: str, dst: str, *extra) -> list:
        return ["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", *extra, src, dst]

    def inspect(self, repo_ref: str) -> dict:
        return json.loads(run(["skopeo", "inspect", "--tls-verify=false", self.ref(repo_ref)]).stdout)

    def inspect_raw(self, repo_ref: str) -> bytes:
        # stdout as bytes: the digest must be computed over the exact bytes served.
        proc = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", self.ref(repo_ref)],
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise CommandFailed(_describe(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace")))
        return proc.stdout

    def list_tags(self, repo: str) -> list:
        return json.loads(run(["skopeo", "list-tags", "--tls-verify=false", self.ref(repo)]).stdout)["Tags"]
