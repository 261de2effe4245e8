"""docker (a private dockerd): load, tag, push, rmi, pull, compare image IDs; pushing the same
image again shows its layers already there (same repository) or mounted (another repository)."""

import json
import re

from clientlib import DOCKER_MANIFEST, berth_only, check_image, log_checked, ns, sha256_bytes

CLIENTS = ns("clients")
REPO = f"{CLIENTS}/docker"


def _pushed_digest(out: str, tag: str) -> str:
    m = re.search(rf"{re.escape(tag)}: digest: (sha256:[0-9a-f]{{64}}) size: (\d+)", out)
    assert m, f"no digest line in docker push output:\n{out}"
    return m.group(1)


def test_docker_push_pull_roundtrip(registry, dockerd, images, skopeo, tmp_path):
    host = registry.host
    archive = tmp_path / "busybox.tar"
    skopeo.copy("oci:%s:busybox" % images.path, f"docker-archive:{archive}:berth-test/busybox:src")
    out = dockerd.docker("load", "-i", archive).stdout
    assert "berth-test/busybox:src" in out, out
    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", "berth-test/busybox:src").stdout.strip()
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]

    dockerd.docker("tag", "berth-test/busybox:src", f"{host}/{REPO}:v1")
    push1 = dockerd.docker("push", f"{host}/{REPO}:v1").stdout
    digest = _pushed_digest(push1, "v1")
    assert re.search(r": Pushed", push1), f"first push should upload layers:\n{push1}"

    raw = skopeo.inspect_raw(f"{REPO}:v1")
    assert sha256_bytes(raw) == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == image_id, "docker pushes its image config as is: digest == image ID"
    check_image(registry, REPO, "v1", expect_digest=digest, expect_diff_ids=diff_ids, expect_arch="amd64")

    # Same image, second tag, same repository: every layer is already there.
    dockerd.docker("tag", "berth-test/busybox:src", f"{host}/{REPO}:v2")
    push2 = dockerd.docker("push", f"{host}/{REPO}:v2").stdout
    assert "Layer already exists" in push2, push2
    assert not re.search(r": Pushed", push2), f"layers were sent again:\n{push2}"
    assert _pushed_digest(push2, "v2") == digest
    assert sorted(skopeo.list_tags(REPO)) == ["v1", "v2"]

    # Another repository on the same registry: docker mounts the layers from REPO.
    mark = registry.log_mark()
    dockerd.docker("tag", "berth-test/busybox:src", f"{host}/{CLIENTS}/docker-mount:v1")
    push3 = dockerd.docker("push", f"{host}/{CLIENTS}/docker-mount:v1").stdout
    assert f"Mounted from {REPO}" in push3, push3
    assert not re.search(r": Pushed", push3), f"layers were sent again:\n{push3}"
    assert _pushed_digest(push3, "v1") == digest
    check_image(registry, f"{CLIENTS}/docker-mount", "v1", expect_digest=digest, expect_diff_ids=diff_ids)
    mount_log = registry.log_since(mark)

    # rmi everything, pull back: the same image ID and the pushed digest.
    for ref in ("berth-test/busybox:src", f"{host}/{REPO}:v1", f"{host}/{REPO}:v2", f"{host}/{CLIENTS}/docker-mount:v1"):
        dockerd.docker("rmi", ref)
    assert dockerd.docker("image", "inspect", image_id, check=False).returncode != 0

    pull = dockerd.docker("pull", f"{host}/{REPO}:v1").stdout
    assert f"Digest: {digest}" in pull, pull
    info = json.loads(dockerd.docker("image", "inspect", f"{host}/{REPO}:v1").stdout)[0]
    assert info["Id"] == image_id
    assert f"{host}/{REPO}@{digest}" in info["RepoDigests"]
    assert info["RootFS"]["Layers"] == diff_ids
    assert info["Architecture"] == "amd64"

    # Pull by digest as well.
    dockerd.docker("pull", f"{host}/{REPO}@{digest}")
    dockerd.docker("rmi", "--force", image_id)

    if (berth_only(registry, "docker push mount: 'blob mounted' log line")
            and log_checked(registry, "docker push mount: 'blob mounted' log line")):
        assert "blob mounted" in mount_log, \
            f"no 'blob mounted' line while docker mounted layers; log of that push (tail):\n{mount_log[-6000:]}"


def test_docker_pulls_oci_index(registry, dockerd, images, skopeo):
    """docker pulls the amd64 image out of an OCI index pushed by skopeo --all."""
    host = registry.host
    repo = f"{CLIENTS}/docker-multi"
    skopeo.copy("oci:%s:multi" % images.path, skopeo.ref(f"{repo}:v1"), "--all")
    pull = dockerd.docker("pull", f"{host}/{repo}:v1").stdout
    assert f"Digest: {images.digest('multi')}" in pull, pull
    info = json.loads(dockerd.docker("image", "inspect", f"{host}/{repo}:v1").stdout)[0]
    assert info["Id"] == images.manifest("busybox")["config"]["digest"]
    assert info["Architecture"] == "amd64"
    dockerd.docker("rmi", "--force", info["Id"])
