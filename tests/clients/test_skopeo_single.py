"""skopeo with a single-arch image: copy in, inspect, inspect --raw, list-tags, copy out, v2s2."""

import json

from clientlib import DOCKER_MANIFEST, OCI_MANIFEST, OciLayout, check_image, ns, sha256_bytes

CLIENTS = ns("clients")
REPO = f"{CLIENTS}/skopeo"


def test_skopeo_copy_inspect_and_copy_back(registry, skopeo, images, tmp_path):
    src_digest = images.digest("busybox")
    src_manifest = images.manifest("busybox")

    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{REPO}:v1"))

    info = skopeo.inspect(f"{REPO}:v1")
    assert info["Digest"] == src_digest, "skopeo inspect reports a different digest than the source layout"
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Layers"] == [l["digest"] for l in src_manifest["layers"]]

    raw = skopeo.inspect_raw(f"{REPO}:v1")
    assert sha256_bytes(raw) == info["Digest"] == src_digest, "inspect --raw bytes do not hash to the digest"
    assert raw == images.blob(src_digest), "the registry changed the manifest bytes"
    assert json.loads(raw).get("mediaType", OCI_MANIFEST) == OCI_MANIFEST  # umoci omits the field

    # By digest too, and over plain HTTP with full content checks.
    assert sha256_bytes(skopeo.inspect_raw(f"{REPO}@{src_digest}")) == src_digest
    check_image(registry, REPO, "v1", expect_digest=src_digest,
                expect_diff_ids=images.config("busybox")["rootfs"]["diff_ids"], expect_arch="amd64")

    assert "v1" in skopeo.list_tags(REPO)

    out = tmp_path / "out"
    skopeo.copy(skopeo.ref(f"{REPO}:v1"), f"oci:{out}:v1")
    pulled = OciLayout(out)
    assert pulled.digest("v1") == src_digest
    assert pulled.blob(src_digest) == images.blob(src_digest)
    assert pulled.manifest("v1")["config"]["digest"] == src_manifest["config"]["digest"]
    assert pulled.config("v1") == images.config("busybox")
    for layer in src_manifest["layers"]:
        assert pulled.blob(layer["digest"]) == images.blob(layer["digest"]), f"layer {layer['digest']} differs"


def test_skopeo_list_tags_several(skopeo, images):
    for tag in ("a1", "b2", "c3"):
        skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{CLIENTS}/skopeo-tags:{tag}"))
    assert sorted(skopeo.list_tags(f"{CLIENTS}/skopeo-tags")) == ["a1", "b2", "c3"]
    digests = {sha256_bytes(skopeo.inspect_raw(f"{CLIENTS}/skopeo-tags:{t}")) for t in ("a1", "b2", "c3")}
    assert digests == {images.digest("busybox")}


def test_skopeo_format_v2s2(registry, skopeo, images, tmp_path):
    src_manifest = images.manifest("busybox")
    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{REPO}:v2s2"), "--format", "v2s2")

    raw = skopeo.inspect_raw(f"{REPO}:v2s2")
    m = json.loads(raw)
    assert m["mediaType"] == DOCKER_MANIFEST, f"expected a docker v2s2 manifest, got {m.get('mediaType')}"
    assert m["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    assert [l["digest"] for l in m["layers"]] == [l["digest"] for l in src_manifest["layers"]], \
        "the gzip layers should be reused as they are"
    assert all(l["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip" for l in m["layers"])

    digest, _ = check_image(registry, REPO, "v2s2", expect_diff_ids=images.config("busybox")["rootfs"]["diff_ids"],
                            expect_arch="amd64")
    assert digest == sha256_bytes(raw) == skopeo.inspect(f"{REPO}:v2s2")["Digest"]

    out = tmp_path / "out"
    skopeo.copy(skopeo.ref(f"{REPO}:v2s2"), f"dir:{out}")
    assert sha256_bytes((out / "manifest.json").read_bytes()) == digest
    for layer in src_manifest["layers"]:
        assert (out / layer["digest"].split(":")[1]).read_bytes() == images.blob(layer["digest"])
