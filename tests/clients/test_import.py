"""Importing from another registry with the real tools: images pushed by skopeo into Debian's
docker-registry are imported with `berth import-image`, then pulled by skopeo through berth
(pull-through), and pulled again after the source registry has stopped.

berth-only: skipped on another registry (REGISTRY_IMPL=docker-registry).
"""

from __future__ import annotations

import json

import pytest

from clientlib import REPORT, Registry, berth_binary, ns, run, sha256_bytes

NS = ns("isimport")


@pytest.fixture(autouse=True)
def _berth_only(registry):
    if not registry.is_berth:
        REPORT.append(f"not checked on {registry.impl} (berth-only): imports ({__name__})")
        pytest.skip("imports are berth-only")


def berth(registry, *args) -> str:
    return run([berth_binary(), "--server", registry.url(""), "-n", NS, *args]).stdout


def layer_digests(layout_dir) -> set[str]:
    index = json.loads((layout_dir / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout_dir / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    return {layer["digest"] for layer in manifest["layers"]}


def test_import_pull_through_and_source_stopped(registry, skopeo, images, tmp_path):
    peer = Registry("docker-registry", tmp_path / "peer").start()
    try:
        src = f"docker://{peer.host}/lib/busybox:1.0"
        skopeo.copy(f"oci:{images.path}:busybox", src, "--format", "v2s2")
        at_peer = sha256_bytes(run(["skopeo", "inspect", "--raw", "--tls-verify=false", src]).stdout.encode())

        out = berth(registry, "import-image", "busybox:1.0", f"--from={peer.host}/lib/busybox:1.0",
                    "--confirm", "--insecure")
        assert out.startswith("imagestream.image.openshift.io/busybox imported\n"), out
        assert at_peer in out, out

        # skopeo pulls through berth: the manifest is berth's copy, the layers come from the peer.
        assert sha256_bytes(skopeo.inspect_raw(f"{NS}/busybox:1.0")) == at_peer
        first = tmp_path / "first"
        skopeo.copy(skopeo.ref(f"{NS}/busybox:1.0"), f"oci:{first}:x")
        assert layer_digests(first) == {layer["digest"] for layer in images.manifest("busybox")["layers"]}
    finally:
        peer.stop()

    # With the source gone, berth serves what the first pull stored.
    second = tmp_path / "second"
    skopeo.copy(skopeo.ref(f"{NS}/busybox:1.0"), f"oci:{second}:x")
    assert layer_digests(second) == layer_digests(first)


def test_import_multi_arch_preserve_original(registry, skopeo, images, tmp_path):
    peer = Registry("docker-registry", tmp_path / "peer").start()
    try:
        src = f"docker://{peer.host}/lib/multi:latest"
        skopeo.copy(f"oci:{images.path}:multi", src, "--all")
        out = berth(registry, "import-image", "multi:latest", f"--from={peer.host}/lib/multi:latest",
                    "--confirm", "--insecure", "--import-mode=PreserveOriginal")
        assert "Manifests:" in out, out
        arches = berth(registry, "get", "istag", "multi:latest", "-o",
                       "jsonpath={range .image.dockerImageManifests[*]}{.os}/{.architecture}{'\\n'}{end}")
        assert sorted(arches.split()) == ["linux/amd64", "linux/arm64"], arches
        # The whole index comes back through berth, each platform pulled through.
        out_dir = tmp_path / "all"
        skopeo.copy(skopeo.ref(f"{NS}/multi:latest"), f"oci:{out_dir}:x", "--all")
        index = json.loads((out_dir / "index.json").read_text())
        assert len(index["manifests"]) == 1
    finally:
        peer.stop()
