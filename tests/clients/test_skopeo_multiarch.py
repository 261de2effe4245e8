"""skopeo copy --all of an OCI index (linux/amd64 + linux/arm64) into the registry and back."""

import json

from clientlib import OCI_INDEX, OciLayout, check_image, ns, sha256_bytes

CLIENTS = ns("clients")
REPO = f"{CLIENTS}/skopeo-multi"


def test_skopeo_copy_all_index_roundtrip(registry, skopeo, images, tmp_path):
    index_digest = images.digest("multi")
    src_index = images.manifest("multi")

    skopeo.copy("oci:%s:multi" % images.path, skopeo.ref(f"{REPO}:v1"), "--all")

    raw = skopeo.inspect_raw(f"{REPO}:v1")
    assert sha256_bytes(raw) == index_digest, "the index digest changed on the way in"
    assert raw == images.blob(index_digest)
    idx = json.loads(raw)
    assert idx["mediaType"] == OCI_INDEX
    assert {m["platform"]["architecture"] for m in idx["manifests"]} == {"amd64", "arm64"}

    # Every child is served by digest, with its config and layers (checked over HTTP).
    digest, _ = check_image(registry, REPO, "v1", expect_digest=index_digest)
    for child in src_index["manifests"]:
        assert sha256_bytes(skopeo.inspect_raw(f"{REPO}@{child['digest']}")) == child["digest"]

    # skopeo picks the amd64 child for a plain inspect on this machine.
    assert skopeo.inspect(f"{REPO}:v1")["Architecture"] == "amd64"

    out = tmp_path / "out"
    skopeo.copy(skopeo.ref(f"{REPO}:v1"), f"oci:{out}:v1", "--all")
    pulled = OciLayout(out)
    assert pulled.digest("v1") == index_digest, "the index digest changed on the way out"
    for child in src_index["manifests"]:
        assert pulled.blob(child["digest"]) == images.blob(child["digest"])
        m = images.manifest(child["digest"])
        assert pulled.blob(m["config"]["digest"]) == images.blob(m["config"]["digest"])
        for layer in m["layers"]:
            assert pulled.blob(layer["digest"]) == images.blob(layer["digest"])
    assert pulled.config(src_index["manifests"][1]["digest"])["architecture"] == "arm64"
