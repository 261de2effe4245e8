"""Two replicas of one deployment (berth on a shared etcd and S3 bucket), seen by real clients:
what skopeo and podman push through replica A is pulled through replica B at once (and the other
way round), a watch on B follows pushes through A in order, and a blob upload started on A is
finished on B.

Runs only when BERTH_URL (replica A, the session registry) and BERTH_URL_B name two replicas
sharing their stores; ./test.sh etcd starts such a pair on a 3-member etcd and a 3-node Garage.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from clientlib import (LayerSpec, OciLayout, Registry, Skopeo, build_layout, check_image, ns, run,
                       sha256_bytes)
from test_podman import Podman

API = "/apis/image.openshift.io/v1"
NS = ns("replicas")


@pytest.fixture(scope="module")
def b(registry) -> Registry:
    url = os.environ.get("BERTH_URL_B")
    if not (registry.remote and url):
        pytest.skip("needs two replicas of one deployment: BERTH_URL and BERTH_URL_B (./test.sh etcd starts them)")
    b = Registry.remote_at(registry.impl, url, os.environ.get("BERTH_URL_B_LOG"))
    assert b.host != registry.host, "BERTH_URL and BERTH_URL_B name the same server"
    return b


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    p = Podman(tmp_path_factory.mktemp("podman-replicas"))
    yield p
    p.close()


def test_pushed_through_one_replica_pulled_through_the_other_at_once(registry, b, skopeo, podman, images,
                                                                      tmp_path):
    a, skopeo_b = registry, Skopeo(b)
    digest = images.digest("busybox")
    diff_ids = images.config("busybox")["rootfs"]["diff_ids"]

    # skopeo: in through A, out through B with no wait in between.
    skopeo.copy(f"oci:{images.path}:busybox", skopeo.ref(f"{NS}/skopeo:v1"))
    assert sha256_bytes(skopeo_b.inspect_raw(f"{NS}/skopeo:v1")) == digest
    assert skopeo_b.list_tags(f"{NS}/skopeo") == ["v1"]
    check_image(b, f"{NS}/skopeo", "v1", expect_digest=digest, expect_diff_ids=diff_ids)
    out = tmp_path / "out"
    skopeo_b.copy(skopeo_b.ref(f"{NS}/skopeo:v1"), f"oci:{out}:v1")
    assert OciLayout(out).digest("v1") == digest

    # An index through B, each child pulled through A.
    skopeo_b.copy(f"oci:{images.path}:multi", skopeo_b.ref(f"{NS}/multi:v1"), "--all")
    check_image(a, f"{NS}/multi", "v1", expect_digest=images.digest("multi"))

    # podman: pushed through B, pulled back through A into empty storage.
    image_id = podman("pull", "-q", f"oci:{images.path}:busybox").stdout.strip().splitlines()[-1]
    podman("tag", image_id, f"{b.host}/{NS}/podman:v1")
    digestfile = tmp_path / "podman.digest"
    podman("push", "--tls-verify=false", "--format", "oci", "--digestfile", digestfile, f"{b.host}/{NS}/podman:v1")
    pushed = digestfile.read_text().strip()
    podman("rmi", "--force", image_id)
    pulled = podman("pull", "--tls-verify=false", "-q", f"{a.host}/{NS}/podman:v1").stdout.strip().splitlines()[-1]
    info = podman.inspect(pulled)
    assert info["Digest"] == pushed, f"pulled through A {info['Digest']}, pushed through B {pushed}"
    assert info["RootFS"]["Layers"] == diff_ids


def _next_event(lines) -> dict:
    """The next watch event from a streamed response's iter_lines() (its read timeout bounds the
    wait)."""
    for line in lines:
        if line:
            return json.loads(line)
    raise AssertionError("the watch ended")


def test_a_watch_on_one_replica_follows_pushes_through_the_other_in_order(b, skopeo, images):
    refs = ["busybox", "busybox-arm64"]
    skopeo.copy(f"oci:{images.path}:busybox", skopeo.ref(f"{NS}/watched:t0"))
    lst = requests.get(b.url(f"{API}/namespaces/{NS}/imagestreams"), timeout=15)
    assert lst.status_code == 200, lst.text
    rv = int(lst.json()["metadata"]["resourceVersion"])
    resp = requests.get(b.url(f"{API}/namespaces/{NS}/imagestreams"),
                        params={"watch": "true", "resourceVersion": str(rv)}, stream=True, timeout=(5, 30))
    try:
        assert resp.status_code == 200, resp.text[:2000]
        lines = resp.iter_lines()
        last = rv
        for i in range(1, 5):
            # Through A, except every third push, which goes through B itself.
            via = Skopeo(b) if i % 3 == 0 else skopeo
            via.copy(f"oci:{images.path}:{refs[i % 2]}", via.ref(f"{NS}/watched:t{i}"))
            # Its event is awaited before the next push: B's watch must deliver every push, each at
            # a resourceVersion above the one before (a watch renders the stream as it is when it
            # delivers the event, so pushes in quick succession could share one).
            while True:
                ev = _next_event(lines)
                obj = ev["object"]
                assert ev["type"] == "MODIFIED" and obj["metadata"]["name"] == "watched", ev
                erv = int(obj["metadata"]["resourceVersion"])
                assert erv > last, f"event at resourceVersion {erv} after {last}: {ev}"
                last = erv
                tags = {t["tag"]: t for t in obj["status"]["tags"]}
                if f"t{i}" in tags:
                    break
            assert tags[f"t{i}"]["items"][0]["image"] == images.digest(refs[i % 2])
    finally:
        resp.close()


def _path(location: str, base: str) -> str:
    """The path and query of a Location (absolute, or relative to base), without the host: the
    same upload session is then addressed through the other replica."""
    u = urlsplit(urljoin(base, location))
    return u.path + (f"?{u.query}" if u.query else "")


def test_an_upload_started_on_one_replica_is_finished_on_the_other(registry, b, skopeo, tmp_path):
    a = registry
    repo = f"{NS}/upload"
    # 12 MiB of random data, stored uncompressed: past berth's 8 MiB S3 part, so the session's
    # parts and pending chunks both travel between the replicas.
    layout = build_layout(tmp_path / "layout", {"split": [LayerSpec(random_files={"data.bin": 12 << 20},
                                                                     compresslevel=0)]})
    manifest = layout.manifest("split")
    layer_digest = manifest["layers"][0]["digest"]
    layer = layout.blob(layer_digest)
    half = len(layer) // 2
    octets = {"Content-Type": "application/octet-stream"}

    r = requests.post(a.url(f"/v2/{repo}/blobs/uploads/"), timeout=30)
    assert r.status_code == 202, f"POST through A: {r.status_code} {r.text}"
    r = requests.patch(a.url(_path(r.headers["Location"], a.url("/"))), data=layer[:half],
                       headers={**octets, "Content-Range": f"0-{half - 1}"}, timeout=120)
    assert r.status_code == 202, f"PATCH through A: {r.status_code} {r.text}"
    session = _path(r.headers["Location"], a.url("/"))

    r = requests.get(b.url(session), timeout=30)
    assert r.status_code == 204, f"GET the session through B: {r.status_code} {r.text}"
    assert r.headers.get("Range") == f"0-{half - 1}", r.headers
    r = requests.patch(b.url(session), data=layer[half:],
                       headers={**octets, "Content-Range": f"{half}-{len(layer) - 1}"}, timeout=120)
    assert r.status_code == 202, f"PATCH through B: {r.status_code} {r.text}"
    session = _path(r.headers["Location"], b.url("/"))
    sep = "&" if "?" in session else "?"
    r = requests.put(b.url(f"{session}{sep}digest={layer_digest}"), timeout=120)
    assert r.status_code == 201, f"PUT through B: {r.status_code} {r.text}"

    # The config and manifest monolithically through A, then a real client pulls the image through B.
    config_digest = manifest["config"]["digest"]
    r = requests.post(a.url(f"/v2/{repo}/blobs/uploads/?digest={config_digest}"), data=layout.blob(config_digest),
                      headers=octets, timeout=30)
    assert r.status_code == 201, f"monolithic POST of the config: {r.status_code} {r.text}"
    body = layout.blob(layout.digest("split"))
    r = requests.put(a.url(f"/v2/{repo}/manifests/v1"), data=body,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, timeout=30)
    assert r.status_code == 201, f"PUT manifest through A: {r.status_code} {r.text}"
    out = tmp_path / "out"
    run(["skopeo", "copy", "--src-tls-verify=false", Skopeo(b).ref(f"{repo}:v1"), f"oci:{out}:v1"], timeout=300)
    pulled = OciLayout(out)
    assert pulled.digest("v1") == sha256_bytes(body)
    assert pulled.blob(layer_digest) == layer
