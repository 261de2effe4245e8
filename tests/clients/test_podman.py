"""podman (vfs storage in a temp root): load, tag, push v2s2 and OCI, rmi, pull back, pull --arch
from an index, manifest create/add/push --all."""

import json
import shutil
import tempfile

import pytest

from clientlib import (DOCKER_MANIFEST, INDEX_TYPES, OCI_MANIFEST, check_image, media_type_of, ns, run,
                       run_fails, sha256_bytes)

CLIENTS = ns("clients")
REPO = f"{CLIENTS}/podman"


class Podman:
    def __init__(self, root):
        root.mkdir(parents=True, exist_ok=True)
        (root / "registries.conf").write_text('unqualified-search-registries = []\n')
        # podman refuses a runroot longer than 50 characters, and pytest's temp paths grow with its
        # run counter (pytest-100/...), so the runroot lives in a short directory of its own.
        self.runroot = tempfile.mkdtemp(prefix="berth-podman-", dir="/tmp")
        self.base = ["podman", "--root", root / "storage", "--runroot", self.runroot,
                     "--tmpdir", root / "tmp", "--storage-driver", "vfs",
                     "--events-backend", "file", "--cgroup-manager", "cgroupfs"]
        self.env = {"CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
                    "TMPDIR": str(root / "tmp")}
        (root / "tmp").mkdir(exist_ok=True)

    def __call__(self, *args, **kw):
        return run([*self.base, *args], env=self.env, **kw)

    def fails(self, *args, **kw):
        return run_fails([*self.base, *args], env=self.env, **kw)

    def inspect(self, name) -> dict:
        return json.loads(self("image", "inspect", name).stdout)[0]

    def close(self):
        self("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.runroot, ignore_errors=True)


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    p = Podman(tmp_path_factory.mktemp("podman"))
    yield p
    p.close()


def test_podman_push_pull_roundtrip(registry, podman, images, skopeo, tmp_path):
    host = registry.host
    src_config = images.manifest("busybox")["config"]["digest"]
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]

    image_id = podman("pull", "-q", f"oci:{images.path}:busybox").stdout.strip().splitlines()[-1]
    assert "sha256:" + image_id == src_config, "podman's image ID should be the config digest of the layout"
    podman("tag", image_id, f"{host}/{REPO}:v2s2", f"{host}/{REPO}:oci")

    results = {}
    for tag, fmt, media_type in (("v2s2", "v2s2", DOCKER_MANIFEST), ("oci", "oci", OCI_MANIFEST)):
        digestfile = tmp_path / f"{tag}.digest"
        podman("push", "--tls-verify=false", "--format", fmt, "--digestfile", digestfile, f"{host}/{REPO}:{tag}")
        pushed = digestfile.read_text().strip()
        raw = skopeo.inspect_raw(f"{REPO}:{tag}")
        assert sha256_bytes(raw) == pushed, f"{tag}: registry serves {sha256_bytes(raw)}, podman pushed {pushed}"
        m = json.loads(raw)
        assert media_type_of(registry, REPO, tag) == media_type, f"--format {fmt} pushed {raw!r}"
        check_image(registry, REPO, tag, expect_digest=pushed, expect_diff_ids=diff_ids, expect_arch="amd64")
        results[tag] = (pushed, m["config"]["digest"])

    # The OCI push keeps the config as it is; v2s2 converts it (a different config digest).
    assert results["oci"][1] == src_config

    podman("rmi", "--force", image_id)
    podman.fails("image", "inspect", image_id)

    # Pull each back into empty storage (podman rewrites the stored manifest when it reuses a layer
    # it already has, so its recorded digest is only comparable from a clean store).
    for tag, (pushed, config_digest) in results.items():
        out = podman("pull", "--tls-verify=false", "-q", f"{host}/{REPO}:{tag}").stdout.strip().splitlines()[-1]
        info = podman.inspect(out)
        assert "sha256:" + info["Id"] == config_digest, f"{tag}: pulled image ID {info['Id']} != config {config_digest}"
        assert info["Digest"] == pushed, f"{tag}: pulled manifest digest {info['Digest']} != pushed {pushed}"
        assert info["RootFS"]["Layers"] == diff_ids
        assert info["Architecture"] == "amd64"
        if tag == "oci":
            assert info["Id"] == image_id, "the OCI round trip should give back the same image ID"
        podman("rmi", "--force", out)


def test_podman_pull_arch_from_index(registry, podman, images, skopeo):
    host = registry.host
    repo = f"{CLIENTS}/podman-multi"
    skopeo.copy("oci:%s:multi" % images.path, skopeo.ref(f"{repo}:v1"), "--all")
    arm_digest = images.digest("busybox-arm64")
    arm_config = images.manifest("busybox-arm64")["config"]["digest"]

    podman("pull", "--tls-verify=false", "--arch", "arm64", f"{host}/{repo}:v1")
    info = podman.inspect(f"{host}/{repo}:v1")
    assert info["Architecture"] == "arm64"
    assert "sha256:" + info["Id"] == arm_config
    # info["Digest"] is not compared: when podman can reuse a layer it already stored, it rewrites
    # the manifest it keeps, so that digest is podman's own, not the registry's.
    assert info["RootFS"]["Layers"] == images.config("busybox-arm64")["rootfs"]["diff_ids"]


def test_podman_manifest_push_all(registry, podman, images, skopeo):
    host = registry.host
    amd = images.digest("busybox")
    arm = images.digest("busybox-arm64")
    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{CLIENTS}/podman-parts:amd64"))
    skopeo.copy("oci:%s:busybox-arm64" % images.path, skopeo.ref(f"{CLIENTS}/podman-parts:arm64"))

    podman("manifest", "create", "berth-test-list")
    podman("manifest", "add", "--tls-verify=false", "berth-test-list", f"docker://{host}/{CLIENTS}/podman-parts:amd64")
    podman("manifest", "add", "--tls-verify=false", "berth-test-list", f"docker://{host}/{CLIENTS}/podman-parts:arm64")
    podman("manifest", "push", "--all", "--tls-verify=false", "berth-test-list",
           f"docker://{host}/{CLIENTS}/podman-list:v1")

    raw = skopeo.inspect_raw(f"{CLIENTS}/podman-list:v1")
    idx = json.loads(raw)
    assert idx["mediaType"] in INDEX_TYPES, f"expected an index, got {idx.get('mediaType')}"
    plats = {(m["platform"]["os"], m["platform"]["architecture"]): m["digest"] for m in idx["manifests"]}
    assert set(plats) == {("linux", "amd64"), ("linux", "arm64")}, plats
    # push --all copied both children into the list's repository (podman may convert them, so
    # their digests can differ from the sources'; check_image checks each child's config says the
    # architecture its platform says, and that the layers match the configs' diff_ids).
    digest, _ = check_image(registry, f"{CLIENTS}/podman-list", "v1")
    assert digest == sha256_bytes(raw)
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]
    for (os_, arch), d in plats.items():
        assert sha256_bytes(skopeo.inspect_raw(f"{CLIENTS}/podman-list@{d}")) == d
        check_image(registry, f"{CLIENTS}/podman-list", d, expect_arch=arch, expect_diff_ids=diff_ids)
