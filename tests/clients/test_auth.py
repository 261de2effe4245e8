"""Access control as real clients see it (issue 7): a berth of its own started with
BERTH_ADMIN_PASSWORD (auth on), users made through the management API (/auth/v1), then

* skopeo with --creds / --dest-creds (users, and a service account's access token as the
  password), --registry-token with a token from /auth/token, and anonymously;
* podman login (a wrong password fails, the right one writes the --authfile), push and pull
  with that file, logout;
* docker login against the private dockerd, push, pull, logout, and a push without login;
* a push into a reserved namespace (`default`): refused for a namespace admin, done by admin.

Every check ends on content: digests the registry serves (read with admin's credentials) against
what the client pushed or the source layout holds, and tags that must not exist after a refusal.

Users: admin (cluster-admin, from BERTH_ADMIN_PASSWORD), alice (edit in `team`), bob (view in
`team`), ci-bot (a service account, edit in `team`, authenticating with an access token).

berth-only: skipped on another registry (REGISTRY_IMPL=docker-registry).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from clientlib import (ALL_MANIFEST_TYPES, DOCKER_MANIFEST, REPORT, CommandFailed, Registry, _describe,
                       check_image, run, run_fails, sha256_bytes)
from test_podman import Podman

NS = "team"

if os.environ.get("REGISTRY_IMPL", "berth") != "berth":
    REPORT.append(f"not checked on {os.environ['REGISTRY_IMPL']} (berth-only): access control ({__name__})")
pytestmark = pytest.mark.skipif(os.environ.get("REGISTRY_IMPL", "berth") != "berth",
                                reason="users, roles and BERTH_ADMIN_PASSWORD are berth's")


# ---- the registry with auth ---------------------------------------------------------------------

class Authed:
    """The registry as one user sees it over HTTP: what check_image needs (get_manifest,
    get_blob), with Basic credentials."""

    def __init__(self, reg: Registry, user: str, password: str):
        self.reg = reg
        self.session = requests.Session()
        self.session.auth = (user, password)

    def url(self, path: str) -> str:
        return self.reg.url(path)

    def get(self, path: str, **kw) -> requests.Response:
        return self.session.get(self.url(path), timeout=kw.pop("timeout", 60), **kw)

    def manifest_response(self, repo: str, ref: str) -> requests.Response:
        return self.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)})

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, requests.Response]:
        r = self.manifest_response(repo, ref)
        assert r.status_code == 200, f"GET /v2/{repo}/manifests/{ref}: {r.status_code} {r.text}"
        return r.content, r

    def get_blob(self, repo: str, digest: str) -> bytes:
        r = self.get(f"/v2/{repo}/blobs/{digest}", timeout=120)
        assert r.status_code == 200, f"GET /v2/{repo}/blobs/{digest}: {r.status_code} {r.text[:500]}"
        assert sha256_bytes(r.content) == digest, f"blob {digest} from {repo}: content hashes differently"
        return r.content

    def served_digest(self, repo: str, ref: str) -> str:
        return sha256_bytes(self.get_manifest(repo, ref)[0])

    def assert_no_manifest(self, repo: str, ref: str):
        r = self.manifest_response(repo, ref)
        assert r.status_code == 404, f"{repo}:{ref} should not exist: GET answered {r.status_code} {r.text[:500]}"

    def tags(self, repo: str) -> list:
        r = self.get(f"/v2/{repo}/tags/list")
        assert r.status_code == 200, f"GET /v2/{repo}/tags/list: {r.status_code} {r.text}"
        return sorted(r.json().get("tags") or [])


@dataclass
class AuthRegistry:
    reg: Registry
    host: str
    admin_pw: str
    alice_pw: str
    bob_pw: str
    ci_token: str
    admin: Authed
    clean_env: dict  # an environment for skopeo/podman that holds no stored credentials

    def api(self, method: str, path: str, body=None, *, auth=None, expect: int | tuple = (200, 201)) -> dict:
        """A management API request (as admin unless auth says otherwise); asserts the status."""
        r = requests.request(method, self.reg.url(path), json=body, auth=auth or ("admin", self.admin_pw),
                             timeout=30)
        expect = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in expect, f"{method} {path} {json.dumps(body)}: {r.status_code} {r.text}"
        return r.json() if r.content else {}

    def skopeo(self, *args, check: bool = True, timeout: float = 180) -> subprocess.CompletedProcess:
        return run(["skopeo", *args], env=self.clean_env, check=check, timeout=timeout)

    def skopeo_fails(self, *args, timeout: float = 180) -> subprocess.CompletedProcess:
        return run_fails(["skopeo", *args], env=self.clean_env, timeout=timeout)

    def skopeo_raw(self, *args) -> bytes:
        """skopeo inspect --raw ... with stdout as bytes (the digest is over the exact bytes)."""
        cmd = ["skopeo", "inspect", "--raw", "--tls-verify=false", *args]
        proc = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                              env={**os.environ, **self.clean_env})
        if proc.returncode != 0:
            raise CommandFailed(_describe(cmd, proc.returncode, proc.stdout.decode(errors="replace"),
                                          proc.stderr.decode(errors="replace")))
        return proc.stdout

    def ref(self, repo_ref: str) -> str:
        return f"docker://{self.host}/{repo_ref}"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory, report) -> AuthRegistry:
    work = tmp_path_factory.mktemp("registry-auth")
    admin_pw = "admin-" + secrets.token_hex(8)
    reg = Registry("berth", work, env={"BERTH_ADMIN_PASSWORD": admin_pw}).start()
    try:
        home = tmp_path_factory.mktemp("auth-home")
        (home / "docker").mkdir()
        (home / "no-auth.json").write_text('{"auths": {}}')  # podman wants REGISTRY_AUTH_FILE to exist
        clean_env = {"REGISTRY_AUTH_FILE": str(home / "no-auth.json"), "DOCKER_CONFIG": str(home / "docker")}
        ar = AuthRegistry(reg=reg, host=reg.host, admin_pw=admin_pw, alice_pw="alice-" + secrets.token_hex(8),
                          bob_pw="bob-" + secrets.token_hex(8), ci_token="", admin=Authed(reg, "admin", admin_pw),
                          clean_env=clean_env)
        # Auth is on: anonymous /v2/ is challenged, admin's password works.
        r = requests.get(reg.url("/v2/"), timeout=10)
        assert r.status_code == 401, f"GET /v2/ without credentials on a berth with BERTH_ADMIN_PASSWORD: {r.status_code}"
        assert ar.admin.get("/v2/").status_code == 200
        who = ar.api("GET", "/auth/v1/whoami")
        assert who["name"] == "admin" and "cluster-admin" in who["clusterRoles"], who

        ar.api("POST", "/auth/v1/users", {"name": "alice", "password": ar.alice_pw})
        ar.api("POST", "/auth/v1/users", {"name": "bob", "password": ar.bob_pw})
        sa = ar.api("POST", "/auth/v1/users", {"name": "ci-bot"})
        assert sa.get("serviceAccount") is True, sa
        for user, role in (("alice", "edit"), ("bob", "view"), ("ci-bot", "edit")):
            b = ar.api("PUT", f"/auth/v1/namespaces/{NS}/rolebindings/{user}", {"role": role})
            assert b == {"user": user, "role": role, "namespace": NS}, b
        bindings = ar.api("GET", f"/auth/v1/namespaces/{NS}/rolebindings")["items"]
        assert sorted((b["user"], b["role"]) for b in bindings) == [("alice", "edit"), ("bob", "view"),
                                                                     ("ci-bot", "edit")], bindings
        tok = ar.api("POST", "/auth/v1/tokens", {"user": "ci-bot", "description": "berth client tests"})
        assert tok["user"] == "ci-bot" and tok["token"].startswith("berth_"), {**tok, "token": "..."}
        ar.ci_token = tok["token"]
        yield ar
    finally:
        code = reg.stop()
        report.append(f"auth registry: berth pid {reg.pid}, exit code {code}, log {reg.log_path}")
        reg.assert_clean_exit(code)


def assert_mentions(proc: subprocess.CompletedProcess, *words: str):
    """The failed command's output names the reason (any of words, case-insensitive)."""
    text = (proc.stdout + proc.stderr).lower()
    assert any(w.lower() in text for w in words), \
        f"expected one of {words} in the output:\n{_describe(proc.args, proc.returncode, proc.stdout, proc.stderr)}"


# ---- 1. skopeo ----------------------------------------------------------------------------------

def test_skopeo_creds_roles_and_tokens(auth_registry, images):
    ar, admin = auth_registry, auth_registry.admin
    repo = f"{NS}/app"
    src = f"oci:{images.path}:busybox"
    want = images.digest("busybox")
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]

    # The challenge an anonymous client gets starts the token flow for exactly this repository.
    r = requests.get(ar.reg.url(f"/v2/{repo}/manifests/v1"), timeout=10)
    assert r.status_code == 401, (r.status_code, r.text)
    assert r.headers.get("WWW-Authenticate") == (
        f'Bearer realm="http://{ar.host}/auth/token",service="berth",scope="repository:{repo}:pull"'), r.headers

    # alice (edit) pushes.
    ar.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{ar.alice_pw}", src, ar.ref(f"{repo}:v1"))
    check_image(admin, repo, "v1", expect_digest=want, expect_diff_ids=diff_ids, expect_arch="amd64")

    # bob (view) may not push: DENIED, and nothing was tagged.
    failed = ar.skopeo_fails("copy", "--dest-tls-verify=false", "--dest-creds", f"bob:{ar.bob_pw}",
                             f"oci:{images.path}:busybox-arm64", ar.ref(f"{repo}:bob"))
    assert_mentions(failed, "denied")
    admin.assert_no_manifest(repo, "bob")
    assert admin.tags(repo) == ["v1"]

    # bob pulls (inspect) what alice pushed.
    info = json.loads(ar.skopeo("inspect", "--tls-verify=false", "--creds", f"bob:{ar.bob_pw}",
                                ar.ref(f"{repo}:v1")).stdout)
    assert info["Digest"] == want, info
    assert info["Layers"] == [l["digest"] for l in images.manifest("busybox")["layers"]], info
    assert sha256_bytes(ar.skopeo_raw("--creds", f"bob:{ar.bob_pw}", ar.ref(f"{repo}:v1"))) == want

    # Without credentials: unauthorized. With a wrong password: refused as well.
    failed = ar.skopeo_fails("inspect", "--tls-verify=false", ar.ref(f"{repo}:v1"))
    assert_mentions(failed, "unauthorized", "authentication required", "401")
    assert want not in failed.stdout
    failed = ar.skopeo_fails("inspect", "--tls-verify=false", "--creds", "bob:not-bobs-password", ar.ref(f"{repo}:v1"))
    assert_mentions(failed, "unauthorized", "invalid username/password", "authentication", "401")

    # The service account: its access token as the password, for a push and an inspect.
    arm = images.digest("busybox-arm64")
    ar.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"ci-bot:{ar.ci_token}",
              f"oci:{images.path}:busybox-arm64", ar.ref(f"{repo}:arm64"))
    check_image(admin, repo, "arm64", expect_digest=arm, expect_arch="arm64")
    info = json.loads(ar.skopeo("inspect", "--tls-verify=false", "--creds", f"ci-bot:{ar.ci_token}",
                                ar.ref(f"{repo}:arm64")).stdout)
    assert info["Digest"] == arm and info["Architecture"] == "arm64", info
    # ... but not under another user's name.
    failed = ar.skopeo_fails("inspect", "--tls-verify=false", "--creds", f"bob:{ar.ci_token}", ar.ref(f"{repo}:v1"))
    assert_mentions(failed, "unauthorized", "invalid username/password", "authentication", "401")
    assert admin.tags(repo) == ["arm64", "v1"]

    # A registry token from the Docker token endpoint, handed to skopeo as --registry-token.
    if "--registry-token" not in ar.skopeo("inspect", "--help").stdout:
        REPORT.append(f"skopeo {ar.skopeo('--version').stdout.strip()} has no --registry-token: not checked")
        return
    r = requests.get(ar.reg.url("/auth/token"), auth=("bob", ar.bob_pw), timeout=30,
                     params={"service": "berth", "scope": f"repository:{repo}:pull,push"})
    assert r.status_code == 200, (r.status_code, r.text)
    body = r.json()
    # bob asked for pull and push; he is granted pull only.
    assert body["scope"] == f"repository:{repo}:pull", body
    pull_token = body["token"]
    info = json.loads(ar.skopeo("inspect", "--tls-verify=false", "--registry-token", pull_token,
                                ar.ref(f"{repo}:v1")).stdout)
    assert info["Digest"] == want, info
    assert sha256_bytes(ar.skopeo_raw("--registry-token", pull_token, ar.ref(f"{repo}:v1"))) == want
    # The token is for that repository only.
    failed = ar.skopeo_fails("inspect", "--tls-verify=false", "--registry-token", pull_token,
                             ar.ref(f"{NS}/other:v1"))
    assert_mentions(failed, "unauthorized", "denied", "authentication required", "401", "403")
    # and does not push.
    failed = ar.skopeo_fails("copy", "--dest-tls-verify=false", "--dest-registry-token", pull_token,
                             f"oci:{images.path}:busybox-arm64", ar.ref(f"{repo}:bob-token"))
    assert_mentions(failed, "unauthorized", "denied", "authentication required", "401", "403")
    admin.assert_no_manifest(repo, "bob-token")
    # An access token is a bearer token too.
    info = json.loads(ar.skopeo("inspect", "--tls-verify=false", "--registry-token", ar.ci_token,
                                ar.ref(f"{repo}:v1")).stdout)
    assert info["Digest"] == want, info
    assert admin.tags(repo) == ["arm64", "v1"]


# ---- 2. podman ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    p = Podman(tmp_path_factory.mktemp("podman-auth"))
    yield p
    p.close()


def test_podman_login_push_pull(auth_registry, podman, images, tmp_path):
    ar, admin, host = auth_registry, auth_registry.admin, auth_registry.host
    repo = f"{NS}/podman"
    # podman refuses an --authfile that does not exist: start from empty files.
    authfile, empty = tmp_path / "auth.json", tmp_path / "empty.json"
    for f in (authfile, empty):
        f.write_text('{"auths": {}}')
    podman.env.update(auth_registry.clean_env)

    # A wrong password: an authentication error, and nothing stored.
    failed = podman.fails("login", "--tls-verify=false", "--authfile", authfile, "-u", "alice", "-p",
                          "wrong-password", host)
    assert_mentions(failed, "invalid username/password", "unauthorized", "401")
    stored = json.loads(authfile.read_text()) if authfile.exists() else {}
    assert host not in (stored.get("auths") or {}), stored

    out = podman("login", "--tls-verify=false", "--authfile", authfile, "-u", "alice", "-p", ar.alice_pw, host)
    assert "Login Succeeded" in out.stdout + out.stderr, out
    stored = json.loads(authfile.read_text())
    assert base64.b64decode(stored["auths"][host]["auth"]).decode() == f"alice:{ar.alice_pw}", stored

    src_config = images.manifest("busybox")["config"]["digest"]
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]
    image_id = podman("pull", "-q", f"oci:{images.path}:busybox").stdout.strip().splitlines()[-1]
    assert "sha256:" + image_id == src_config
    podman("tag", image_id, f"{host}/{repo}:v1")

    # Without the authfile podman has no credentials: the push is refused.
    failed = podman.fails("push", "--tls-verify=false", "--authfile", empty,
                          f"{host}/{repo}:v1")
    assert_mentions(failed, "unauthorized", "authentication required", "401")
    admin.assert_no_manifest(repo, "v1")

    digestfile = tmp_path / "v1.digest"
    podman("push", "--tls-verify=false", "--authfile", authfile, "--format", "oci", "--digestfile", digestfile,
           f"{host}/{repo}:v1")
    pushed = digestfile.read_text().strip()
    assert admin.served_digest(repo, "v1") == pushed
    check_image(admin, repo, "v1", expect_digest=pushed, expect_diff_ids=diff_ids, expect_arch="amd64")

    # Pull back into an empty store with the authfile.
    podman("rmi", "--force", image_id)
    podman.fails("pull", "--tls-verify=false", "--authfile", empty, f"{host}/{repo}:v1")
    out = podman("pull", "--tls-verify=false", "-q", "--authfile", authfile, f"{host}/{repo}:v1").stdout
    pulled = out.strip().splitlines()[-1]
    info = podman.inspect(pulled)
    assert info["Id"] == image_id, "the OCI round trip should give back the same image ID"
    assert info["Digest"] == pushed, info["Digest"]
    assert info["RootFS"]["Layers"] == diff_ids
    podman("rmi", "--force", pulled)

    podman("logout", "--authfile", authfile, host)
    stored = json.loads(authfile.read_text())
    assert host not in (stored.get("auths") or {}), stored
    failed = podman.fails("pull", "--tls-verify=false", "--authfile", authfile, f"{host}/{repo}:v1")
    assert_mentions(failed, "unauthorized", "authentication required", "401")


# ---- 3. docker ----------------------------------------------------------------------------------

def _pushed_digest(out: str, tag: str) -> str:
    m = re.search(rf"{re.escape(tag)}: digest: (sha256:[0-9a-f]{{64}}) size: (\d+)", out)
    assert m, f"no digest line in docker push output:\n{out}"
    return m.group(1)


def test_docker_login_push_pull_logout(auth_registry, dockerd, images, tmp_path):
    ar, admin, host = auth_registry, auth_registry.admin, auth_registry.host
    repo = f"{NS}/docker"
    config_json = Path(dockerd.env()["DOCKER_CONFIG"]) / "config.json"

    def auths() -> dict:
        return (json.loads(config_json.read_text()).get("auths") or {}) if config_json.exists() else {}

    archive = tmp_path / "busybox.tar"
    ar.skopeo("copy", f"oci:{images.path}:busybox", f"docker-archive:{archive}:berth-auth/busybox:src")
    dockerd.docker("load", "-i", archive)
    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", "berth-auth/busybox:src").stdout.strip()
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]
    dockerd.docker("tag", "berth-auth/busybox:src", f"{host}/{repo}:v1")
    dockerd.docker("tag", "berth-auth/busybox:src", f"{host}/{repo}:nologin")

    try:
        # Not logged in: the push is refused.
        started = time.monotonic()
        failed = run_fails([dockerd.cli, "push", f"{host}/{repo}:nologin"], env=dockerd.env())
        assert_mentions(failed, "unauthorized", "authentication required", "no basic auth credentials", "denied")
        admin.assert_no_manifest(repo, "nologin")
        # docker retries an upload (5 s, 10 s, 15 s, 20 s) unless the error says not to: a
        # refusal must carry a detail, or a challenge with error="insufficient_scope".
        retries = failed.stdout.count("Retrying in")
        assert retries == 0, f"docker retried a refused push {retries} times " \
                             f"({time.monotonic() - started:.0f} s): {failed.stderr.strip()!r}"

        failed = run_fails([dockerd.cli, "login", "-u", "alice", "-p", "wrong-password", host], env=dockerd.env())
        assert_mentions(failed, "unauthorized", "invalid username/password", "401")
        assert host not in auths()

        out = dockerd.docker("login", "-u", "alice", "--password-stdin", host, input=ar.alice_pw + "\n")
        assert "Login Succeeded" in out.stdout, out
        assert base64.b64decode(auths()[host]["auth"]).decode() == f"alice:{ar.alice_pw}", auths()

        push = dockerd.docker("push", f"{host}/{repo}:v1").stdout
        digest = _pushed_digest(push, "v1")
        assert re.search(r": Pushed", push), push
        raw, _ = admin.get_manifest(repo, "v1")
        assert sha256_bytes(raw) == digest, f"berth serves {sha256_bytes(raw)}, docker pushed {digest}"
        manifest = json.loads(raw)
        assert manifest["mediaType"] == DOCKER_MANIFEST
        assert manifest["config"]["digest"] == image_id
        check_image(admin, repo, "v1", expect_digest=digest, expect_diff_ids=diff_ids, expect_arch="amd64")
        assert admin.tags(repo) == ["v1"]

        for ref in ("berth-auth/busybox:src", f"{host}/{repo}:v1", f"{host}/{repo}:nologin"):
            dockerd.docker("rmi", ref)
        assert dockerd.docker("image", "inspect", image_id, check=False).returncode != 0
        pull = dockerd.docker("pull", f"{host}/{repo}:v1").stdout
        assert f"Digest: {digest}" in pull, pull
        info = json.loads(dockerd.docker("image", "inspect", f"{host}/{repo}:v1").stdout)[0]
        assert info["Id"] == image_id
        assert f"{host}/{repo}@{digest}" in info["RepoDigests"]
        assert info["RootFS"]["Layers"] == diff_ids

        out = dockerd.docker("logout", host)
        assert host not in auths(), auths()
        # Logged out: neither pull nor push.
        dockerd.docker("rmi", "--force", image_id)
        failed = run_fails([dockerd.cli, "pull", f"{host}/{repo}:v1"], env=dockerd.env())
        assert_mentions(failed, "unauthorized", "authentication required", "no basic auth credentials", "denied")
    finally:
        dockerd.docker("logout", host, check=False)
        dockerd.docker("rmi", "--force", image_id, check=False)


# ---- 4. reserved namespaces ---------------------------------------------------------------------

def test_reserved_namespace_needs_cluster_admin(auth_registry, images):
    ar, admin = auth_registry, auth_registry.admin
    repo = "default/x"
    src = f"oci:{images.path}:busybox"
    want = images.digest("busybox")

    # Even as admin of `default`, alice may not push there.
    b = ar.api("PUT", "/auth/v1/namespaces/default/rolebindings/alice", {"role": "admin"})
    assert b == {"user": "alice", "role": "admin", "namespace": "default"}, b
    try:
        who = ar.api("GET", "/auth/v1/whoami", auth=("alice", ar.alice_pw))
        assert who["namespaces"].get("default") == "admin", who
        failed = ar.skopeo_fails("copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{ar.alice_pw}", src,
                                 ar.ref(f"{repo}:v1"))
        assert_mentions(failed, "denied")
        admin.assert_no_manifest(repo, "v1")
        r = admin.get(f"/apis/image.openshift.io/v1/namespaces/default/imagestreams/x")
        assert r.status_code == 404, f"a refused push left an image stream: {r.status_code} {r.text[:1000]}"

        # admin (cluster-admin) pushes; alice, an admin of the namespace, may pull it.
        ar.skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"admin:{ar.admin_pw}", src,
                  ar.ref(f"{repo}:v1"))
        check_image(admin, repo, "v1", expect_digest=want, expect_arch="amd64")
        assert sha256_bytes(ar.skopeo_raw("--creds", f"alice:{ar.alice_pw}", ar.ref(f"{repo}:v1"))) == want
        # Pushing a new tag to the existing stream is still refused.
        failed = ar.skopeo_fails("copy", "--dest-tls-verify=false", "--dest-creds", f"alice:{ar.alice_pw}", src,
                                 ar.ref(f"{repo}:v2"))
        assert_mentions(failed, "denied")
        assert admin.tags(repo) == ["v1"]
    finally:
        ar.api("DELETE", "/auth/v1/namespaces/default/rolebindings/alice")
