"""skopeo registry -> registry between two repositories (cross-repository blob mount), then delete."""

import re
from urllib.parse import unquote

import requests

from clientlib import ALL_MANIFEST_TYPES, check_image, log_checked, ns, run, run_fails, sha256_bytes

CLIENTS = ns("clients")
SRC = f"{CLIENTS}/skopeo-src"
DST = f"{CLIENTS}/skopeo-dst"


def test_skopeo_registry_to_registry_mounts_blobs(registry, skopeo, images):
    src_digest = images.digest("busybox")
    layers = [l["digest"] for l in images.manifest("busybox")["layers"]]
    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{SRC}:v1"))

    mark = registry.log_mark()
    skopeo.copy(skopeo.ref(f"{SRC}:v1"), skopeo.ref(f"{DST}:v1"))
    log = registry.log_since(mark)

    assert sha256_bytes(skopeo.inspect_raw(f"{DST}:v1")) == src_digest
    check_image(registry, DST, "v1", expect_digest=src_digest,
                expect_diff_ids=images.config("busybox")["rootfs"]["diff_ids"])

    if not log_checked(registry, "skopeo copy between repositories: 'blob mounted' log lines"):
        return
    if registry.is_berth:
        mounted = [l for l in log.splitlines() if "blob mounted" in l]
        assert len(mounted) >= len(layers), (
            f"expected a 'blob mounted' log line for each of the {len(layers)} layer(s) copied "
            f"{SRC} -> {DST}; log of that copy (tail):\n{log[-6000:]}")
    else:
        # Distribution logs each request: the layer must have come by POST ...?mount=<digest>&from=SRC -> 201.
        for d in layers:
            hits = [l for l in map(unquote, log.splitlines())
                    if "method=POST" in l and f"mount={d}" in l and f"from={SRC}" in l and "status=201" in l]
            assert hits, f"no successful mount of {d} in the registry log (tail):\n{log[-6000:]}"


def test_skopeo_delete(registry, skopeo, images):
    repo = f"{CLIENTS}/skopeo-del"
    digest = images.digest("busybox")
    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{repo}:gone"))
    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{CLIENTS}/skopeo-keep:kept"))
    assert sha256_bytes(skopeo.inspect_raw(f"{repo}:gone")) == digest

    run_fails(["skopeo", "delete", "--tls-verify=false", skopeo.ref(f"{repo}:nosuchtag")])
    run(["skopeo", "delete", "--tls-verify=false", skopeo.ref(f"{repo}:gone")])

    proc = run_fails(["skopeo", "inspect", "--tls-verify=false", skopeo.ref(f"{repo}:gone")])
    assert re.search(r"manifest unknown|not found|404", proc.stderr, re.I), proc.stderr
    run_fails(["skopeo", "inspect", "--raw", "--tls-verify=false", skopeo.ref(f"{repo}@{digest}")])
    r = requests.get(registry.url(f"/v2/{repo}/manifests/{digest}"),
                     headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}, timeout=30)
    assert r.status_code == 404, f"GET deleted manifest by digest: {r.status_code} {r.text}"
    r = requests.get(registry.url(f"/v2/{repo}/tags/list"), timeout=30)
    assert r.status_code == 404 or "gone" not in (r.json().get("tags") or []), r.text

    # Deleting in one repository leaves the same manifest in another untouched.
    assert sha256_bytes(skopeo.inspect_raw(f"{CLIENTS}/skopeo-keep:kept")) == digest
