"""The image-stream API (/apis/image.openshift.io/v1) as real clients see it: pushes made with
skopeo show up as Images, ImageStream history and ImageStreamTags; the Python kubernetes dynamic
client discovers and reads them; a watch streams the change a push makes.

berth-only: the whole module is skipped on another registry (REGISTRY_IMPL=docker-registry).
Namespaces used here (isns, iswatch, each with BERTH_TEST_NS_SUFFIX) are used by no other test
file, so the exact contents of their lists can be asserted.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from clientlib import OCI_INDEX, REPORT, berth_binary, ns, run, sha256_bytes

API = "/apis/image.openshift.io/v1"
NS = ns("isns")
WATCH_NS = ns("iswatch")

# Streams this module pushed to NS (so the list the dynamic client gets can be checked exactly).
PUSHED: set[str] = set()


@pytest.fixture(autouse=True)
def _berth_only(registry):
    if not registry.is_berth:
        REPORT.append(f"not checked on {registry.impl} (berth-only): image-stream API ({__name__})")
        pytest.skip("the image-stream API is berth-only")


# ---- helpers ------------------------------------------------------------------------------------

def api_get(reg, path: str, **params) -> dict:
    url = reg.url(API + path)
    r = requests.get(url, params=params or None, timeout=15)
    assert r.status_code == 200, f"GET {r.url}: {r.status_code} {r.headers.get('Content-Type')}\n{r.text[:3000]}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), \
        f"GET {r.url}: Content-Type {r.headers.get('Content-Type')!r}"
    return r.json()


def get_stream(reg, ns: str, name: str) -> dict:
    s = api_get(reg, f"/namespaces/{ns}/imagestreams/{name}")
    assert s.get("kind") == "ImageStream" and s.get("apiVersion") == "image.openshift.io/v1", s
    assert s["metadata"]["name"] == name and s["metadata"]["namespace"] == ns, s["metadata"]
    return s


def history(stream: dict, tag: str) -> list:
    """status.tags[tag].items (newest first); status.tags is a list of {tag, items}."""
    tags = (stream.get("status") or {}).get("tags") or []
    matches = [t for t in tags if t.get("tag") == tag]
    assert len(matches) == 1, f"status.tags should hold tag {tag!r} once: {json.dumps(tags, indent=1)}"
    return matches[0].get("items") or []


def push(skopeo, images, ref: str, dst: str, *extra):
    """skopeo copy oci:<layout>:<ref> to docker://<registry>/<dst>; returns the manifest digest
    the registry serves for dst (sha256 of skopeo inspect --raw)."""
    skopeo.copy(f"oci:{images.path}:{ref}", skopeo.ref(dst), *extra)
    ns, rest = dst.split("/", 1)
    if ns == NS:
        PUSHED.add(rest.split(":")[0])
    return sha256_bytes(skopeo.inspect_raw(dst))


# ---- 1. history of a tag ------------------------------------------------------------------------

def test_skopeo_push_creates_stream_history(registry, skopeo, images):
    amd64 = push(skopeo, images, "busybox", f"{NS}/app:latest")
    assert amd64 == images.digest("busybox"), "skopeo/the registry changed the manifest"

    s = get_stream(registry, NS, "app")
    items = history(s, "latest")
    assert [i["image"] for i in items] == [amd64], json.dumps(s, indent=1)
    ref = items[0]["dockerImageReference"]
    assert ref.endswith(f"/{NS}/app@{amd64}"), f"dockerImageReference {ref!r}"
    assert s["status"].get("dockerImageRepository", "").endswith(f"/{NS}/app"), s["status"]
    assert items[0].get("created"), f"history item without created: {items[0]}"

    img = api_get(registry, f"/images/{amd64}")
    assert img["metadata"]["name"] == amd64, img.get("metadata")
    assert "namespace" not in img["metadata"] or not img["metadata"]["namespace"], "Images are cluster-scoped"
    meta = img.get("dockerImageMetadata") or {}
    assert meta.get("Architecture") == "amd64", f"dockerImageMetadata: {json.dumps(meta, indent=1)[:2000]}"
    assert (meta.get("Config") or {}).get("Cmd") == ["/bin/sh"], meta.get("Config")
    manifest = images.manifest("busybox")
    assert [l["name"] for l in img.get("dockerImageLayers") or []] == [l["digest"] for l in manifest["layers"]], \
        f"dockerImageLayers {img.get('dockerImageLayers')} != manifest layers {manifest['layers']}"
    assert [l["size"] for l in img["dockerImageLayers"]] == [l["size"] for l in manifest["layers"]]
    assert img.get("dockerImageReference", "").endswith(f"@{amd64}"), img.get("dockerImageReference")

    # A second image on the same tag goes on top.
    arm64 = push(skopeo, images, "busybox-arm64", f"{NS}/app:latest")
    assert arm64 == images.digest("busybox-arm64") != amd64
    items = history(get_stream(registry, NS, "app"), "latest")
    assert [i["image"] for i in items] == [arm64, amd64], json.dumps(items, indent=1)
    assert items[0]["dockerImageReference"].endswith(f"/{NS}/app@{arm64}"), items[0]
    assert api_get(registry, f"/images/{arm64}")["dockerImageMetadata"]["Architecture"] == "arm64"

    # Re-pushing the first image makes it current again: a third item, on top.
    assert push(skopeo, images, "busybox", f"{NS}/app:latest") == amd64
    items = history(get_stream(registry, NS, "app"), "latest")
    assert [i["image"] for i in items] == [amd64, arm64, amd64], json.dumps(items, indent=1)

    # The registry side agrees: the tag resolves to the first image again.
    info = skopeo.inspect(f"{NS}/app:latest")
    assert info["Digest"] == amd64 and info["Architecture"] == "amd64", info

    istag = api_get(registry, f"/namespaces/{NS}/imagestreamtags/app:latest")
    assert istag["kind"] == "ImageStreamTag" and istag["metadata"]["name"] == "app:latest", istag.get("metadata")
    assert istag["image"]["metadata"]["name"] == amd64
    assert istag["image"]["dockerImageMetadata"]["Architecture"] == "amd64"

    # Checked last, so that the content checks above run even if this fails: a GET of an Image
    # (like any top-level object) names its kind and apiVersion.
    assert (img.get("kind"), img.get("apiVersion")) == ("Image", "image.openshift.io/v1"), \
        f"GET {API}/images/{amd64}: kind {img.get('kind')!r}, apiVersion {img.get('apiVersion')!r}"


# ---- 2. a multi-arch index ----------------------------------------------------------------------

def test_skopeo_multiarch_index_istag(registry, skopeo, images):
    index_digest = push(skopeo, images, "multi", f"{NS}/multi:latest", "--all")
    assert index_digest == images.digest("multi")
    index = images.manifest("multi")

    istag = api_get(registry, f"/namespaces/{NS}/imagestreamtags/multi:latest")
    image = istag["image"]
    assert image["metadata"]["name"] == index_digest, image["metadata"]
    assert image.get("dockerImageManifestMediaType") == OCI_INDEX, image.get("dockerImageManifestMediaType")
    manifests = image.get("dockerImageManifests") or []
    # `oc get istag multi:latest -o jsonpath='{range .image.dockerImageManifests[*]}{.os}/{.architecture}{"\n"}{end}'`
    lines = "".join(f"{m.get('os')}/{m.get('architecture')}\n" for m in manifests)
    assert lines == "linux/amd64\nlinux/arm64\n", f"dockerImageManifests: {json.dumps(manifests, indent=1)}"
    assert [m["digest"] for m in manifests] == [c["digest"] for c in index["manifests"]]
    assert [m.get("manifestSize") for m in manifests] == [c["size"] for c in index["manifests"]]
    assert all(m.get("mediaType") == c["mediaType"] for m, c in zip(manifests, index["manifests"])), manifests

    items = history(get_stream(registry, NS, "multi"), "latest")
    assert [i["image"] for i in items] == [index_digest], json.dumps(items, indent=1)


# ---- 3. the Python kubernetes dynamic client ----------------------------------------------------

def test_kubernetes_dynamic_client(registry, skopeo, images, tmp_path):
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes.dynamic import DynamicClient

    # Self-contained: push a stream of our own (the list also holds what the tests above pushed).
    digest = push(skopeo, images, "busybox-arm64", f"{NS}/dyn:v1")

    cfg = kubernetes.client.Configuration()
    cfg.host = registry.url("")
    api_client = kubernetes.client.ApiClient(cfg)
    try:
        # A private discovery cache (the default is a shared file in /tmp keyed by host).
        dyn = DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))
        streams = dyn.resources.get(api_version="image.openshift.io/v1", kind="ImageStream")
        assert streams.namespaced and streams.name == "imagestreams", streams

        listed = streams.get(namespace=NS)
        assert listed.kind == "ImageStreamList", listed.kind
        names = sorted(i.metadata.name for i in listed.items)
        assert names == sorted(PUSHED), f"imagestreams in {NS}: {names}, pushed {sorted(PUSHED)}"
        assert all(i.metadata.namespace == NS for i in listed.items)
        assert listed.metadata.resourceVersion, "list without metadata.resourceVersion"

        one = streams.get(namespace=NS, name="dyn")
        tags = {t.tag: t for t in one.status.tags}
        assert [i.image for i in tags["v1"]["items"]] == [digest], one.status.tags

        istags = dyn.resources.get(api_version="image.openshift.io/v1", kind="ImageStreamTag")
        istag = istags.get(namespace=NS, name="dyn:v1")
        assert istag.image.metadata.name == digest
        assert istag.image.dockerImageMetadata.Architecture == "arm64"
        if "app" in PUSHED:  # test 1 ran in this session
            app = istags.get(namespace=NS, name="app:latest")
            assert app.image.metadata.name == images.digest("busybox")

        # Lookup by short name (the discovery document advertises "is" and "istag").
        by_short = dyn.resources.get(api_version="image.openshift.io/v1", short_names=["is"])
        assert by_short.kind == "ImageStream" and by_short.name == "imagestreams", by_short
        assert dyn.resources.get(short_names=["istag"]).kind == "ImageStreamTag"

        image = dyn.resources.get(api_version="image.openshift.io/v1", kind="Image")
        assert not image.namespaced
        got = image.get(name=digest)
        assert got.metadata.name == digest and got.dockerImageMetadata.Architecture == "arm64"
    finally:
        api_client.close()


# ---- 4. watch -----------------------------------------------------------------------------------

class WatchReader:
    """Reads a watch response's JSON lines in the calling thread (a background reader would keep
    resp.close() waiting on the socket until its read timed out). Each read waits at most the
    response's read timeout; every event is logged in seen."""

    def __init__(self, resp):
        self.lines = resp.iter_lines(chunk_size=None)  # each chunk as it arrives
        self.seen: list = []

    def wait_for(self, pred, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = next(self.lines)
            except StopIteration:
                raise AssertionError(f"the watch ended; events so far: {self.seen}") from None
            except requests.RequestException as e:
                raise AssertionError(f"watch read failed ({e}); events so far: {self.seen}") from None
            if not line:
                continue
            ev = json.loads(line)
            meta = (ev.get("object") or {}).get("metadata") or {}
            self.seen.append({"type": ev.get("type"), "name": meta.get("name"), "rv": meta.get("resourceVersion")})
            if pred(ev):
                return ev
        return None


def test_watch_sees_push(registry, skopeo, images):
    first = push(skopeo, images, "busybox", f"{WATCH_NS}/w:latest")

    lst = api_get(registry, f"/namespaces/{WATCH_NS}/imagestreams")
    assert lst.get("kind") == "ImageStreamList", lst
    assert [i["metadata"]["name"] for i in lst["items"]] == ["w"], lst
    rv = lst["metadata"]["resourceVersion"]
    assert rv, lst["metadata"]

    url = registry.url(f"{API}/namespaces/{WATCH_NS}/imagestreams")
    # The read timeout bounds each wait for a line.
    resp = requests.get(url, params={"watch": "true", "resourceVersion": rv}, stream=True, timeout=(5, 10))
    pushers: list = []
    errors: list = []

    def push_in_thread(ref, dst):
        def go():
            try:
                push(skopeo, images, ref, dst)
            except Exception as e:
                errors.append(e)
        t = threading.Thread(target=go, daemon=True)
        t.start()
        pushers.append(t)
        return t

    try:
        assert resp.status_code == 200, f"GET {resp.url}: {resp.status_code}\n{resp.text[:3000]}"
        assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
        watch = WatchReader(resp)

        # A new image on an existing stream: MODIFIED, with the new history item on top.
        second = images.digest("busybox-arm64")
        t0 = time.monotonic()
        push_in_thread("busybox-arm64", f"{WATCH_NS}/w:latest")

        def is_w_modified(ev):
            obj = ev.get("object") or {}
            if ev.get("type") != "MODIFIED" or obj.get("metadata", {}).get("name") != "w":
                return False
            tags = {t["tag"]: t for t in (obj.get("status") or {}).get("tags") or []}
            return [i["image"] for i in tags.get("latest", {}).get("items", [])][:1] == [second]

        ev = watch.wait_for(is_w_modified, timeout=10)
        elapsed = time.monotonic() - t0
        pushers[-1].join(30)
        assert not errors, f"push failed: {errors[0]}"
        assert ev is not None, f"no MODIFIED event for {WATCH_NS}/w with {second} on top; events: {watch.seen}"
        assert elapsed < 5, f"the MODIFIED event took {elapsed:.1f}s (push included)"
        obj = ev["object"]
        assert obj["metadata"]["namespace"] == WATCH_NS and obj.get("kind") == "ImageStream", obj.get("metadata")
        items = history(obj, "latest")
        assert [i["image"] for i in items] == [second, first], json.dumps(items, indent=1)
        assert items[0]["dockerImageReference"].endswith(f"/{WATCH_NS}/w@{second}"), items[0]
        assert int(obj["metadata"]["resourceVersion"]) > int(rv), (obj["metadata"], rv)
        # Nothing from before the list's resourceVersion is replayed.
        assert all(e["name"] == "w" and int(e["rv"]) > int(rv) for e in watch.seen), watch.seen

        # A new stream in the watched namespace: ADDED first, then (or at once) its history item.
        t0 = time.monotonic()
        push_in_thread("busybox", f"{WATCH_NS}/w2:v1")

        def is_w2(ev):
            obj = ev.get("object") or {}
            if obj.get("metadata", {}).get("name") != "w2" or ev.get("type") not in ("ADDED", "MODIFIED"):
                return False
            tags = {t["tag"]: t for t in (obj.get("status") or {}).get("tags") or []}
            return bool(tags.get("v1", {}).get("items"))

        ev = watch.wait_for(is_w2, timeout=10)
        elapsed = time.monotonic() - t0
        pushers[-1].join(30)
        assert not errors, f"push failed: {errors[0]}"
        assert ev is not None, f"no event for the new stream {WATCH_NS}/w2 with a v1 item; events: {watch.seen}"
        assert elapsed < 5, f"the event for w2 took {elapsed:.1f}s (push included)"
        assert [i["image"] for i in history(ev["object"], "v1")] == [first]
        w2_types = [e["type"] for e in watch.seen if e["name"] == "w2"]
        assert w2_types[0] == "ADDED", f"the first event of a new stream should be ADDED: {watch.seen}"
    finally:
        resp.close()
        for t in pushers:
            t.join(60)


# ---- 5. rollback with the CLI changes what clients pull -----------------------------------------

def test_cli_rollback_changes_what_skopeo_pulls(registry, skopeo, images):
    """`berth tag stream@<old id> stream:latest` (spec §3.10): skopeo then gets the old image
    by tag, with no re-push."""
    first = push(skopeo, images, "busybox", f"{NS}/rollback:latest")
    second = push(skopeo, images, "busybox-arm64", f"{NS}/rollback:latest")
    assert first != second
    assert sha256_bytes(skopeo.inspect_raw(f"{NS}/rollback:latest")) == second

    berth = [berth_binary(), "--server", registry.url(""), "-n", NS]
    out = run(berth + ["tag", f"rollback@{first}", "rollback:latest"]).stdout
    assert out == f"Tag rollback:latest set to rollback@{first}.\n", out
    assert sha256_bytes(skopeo.inspect_raw(f"{NS}/rollback:latest")) == first
    assert skopeo.inspect(f"{NS}/rollback:latest")["Architecture"] == "amd64"

    items = history(get_stream(registry, NS, "rollback"), "latest")
    assert [i["image"] for i in items] == [first, second, first]
