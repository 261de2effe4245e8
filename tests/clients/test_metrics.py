"""`GET /metrics` read by the reference Prometheus text parser (prometheus_client, from PyPI):

* a berth of its own (no metrics token: loopback clients may scrape) gets pushes and pulls;
  two scrapes around a known batch of requests show the counters and histograms moving by
  exactly that batch, the gauges present, and no repository, tag or digest in any label;
* a berth started with BERTH_METRICS_TOKEN answers 401 without the token and serves the
  same text with it.

berth-only: skipped on another registry (REGISTRY_IMPL=docker-registry).
"""

from __future__ import annotations

import json
import os

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clientlib import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, REPORT, Registry, sha256_bytes

if os.environ.get("REGISTRY_IMPL", "berth") != "berth":
    REPORT.append(f"not checked on {os.environ['REGISTRY_IMPL']} (berth-only): /metrics ({__name__})")
pytestmark = pytest.mark.skipif(os.environ.get("REGISTRY_IMPL", "berth") != "berth",
                                reason="/metrics is berth's")

REPO = "metricsns/private-stream"
TAG = "secret-tag"


def scrape(reg: Registry, token: str | None = None) -> tuple[dict, str]:
    """Parses /metrics; returns {(sample name, sorted labels): value} and the raw text."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(reg.url("/metrics"), headers=headers, timeout=30)
    assert r.status_code == 200, f"/metrics: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
    samples = {}
    # The parser raises on anything that is not valid exposition text.
    for family in text_string_to_metric_families(r.text):
        assert family.type in ("counter", "gauge", "histogram"), (family.name, family.type)
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples, "no samples"
    return samples, r.text


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def push_blob(reg: Registry, data: bytes) -> str:
    digest = sha256_bytes(data)
    r = requests.post(reg.url(f"/v2/{REPO}/blobs/uploads/"), timeout=30)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    r = requests.put(reg.url(f"{loc}{'&' if '?' in loc else '?'}digest={digest}"), data=data, timeout=30)
    assert r.status_code == 201, r.text
    return digest


def push_image(reg: Registry) -> tuple[str, bytes]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"metrics layer " * 1000
    cd, ld = push_blob(reg, config), push_blob(reg, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": ld, "size": len(layer)}],
    }).encode()
    r = requests.put(reg.url(f"/v2/{REPO}/manifests/{TAG}"), data=manifest,
                     headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text
    return ld, manifest


def test_counters_move_with_requests(new_registry):
    reg = new_registry("metrics")
    layer_digest, manifest = push_image(reg)
    before, _ = scrape(reg)

    pulls, misses = 3, 2
    for _ in range(pulls):
        r = requests.get(reg.url(f"/v2/{REPO}/manifests/{TAG}"), headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert r.status_code == 200 and r.content == manifest
    for i in range(misses):
        assert requests.get(reg.url(f"/v2/{REPO}/manifests/absent-{i}"), timeout=30).status_code == 404
    r = requests.get(reg.url(f"/v2/{REPO}/blobs/{layer_digest}"), timeout=30)
    assert r.status_code == 200
    blob_len = len(r.content)
    upload = requests.post(reg.url(f"/v2/{REPO}/blobs/uploads/"), timeout=30)
    assert upload.status_code == 202

    after, text = scrape(reg)
    for leak in ("metricsns", "private-stream", TAG, "absent-", layer_digest[7:23]):
        assert leak not in text, f"{leak!r} appears in /metrics"

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    get_manifest = dict(route="get_manifest", method="GET")
    assert moved("berth_http_requests_total", status="200", **get_manifest) == pulls
    assert moved("berth_http_requests_total", status="404", **get_manifest) == misses
    assert moved("berth_http_request_duration_seconds_count", **get_manifest) == pulls + misses
    assert moved("berth_http_request_duration_seconds_bucket", le="+Inf", **get_manifest) == pulls + misses
    assert moved("berth_http_requests_total", route="get_blob", method="GET", status="200") == 1
    assert moved("berth_http_response_body_bytes_total", route="get_blob") == blob_len
    assert moved("berth_http_response_body_bytes_total", route="get_manifest") >= pulls * len(manifest)
    # The first scrape itself is counted by the time of the second.
    assert moved("berth_http_requests_total", route="metrics", method="GET", status="200") == 1
    assert value(after, "berth_uploads_open") == 1
    assert value(after, "berth_http_connections_open") >= 1
    assert value(after, "berth_blob_store_bytes") >= blob_len
    assert value(after, "berth_metadata_store_disk_bytes") > 0
    assert value(after, "berth_data_dir_free_bytes") > 0
    assert value(after, "process_resident_memory_bytes") > 1 << 20
    assert ("berth_imports_total", (("result", "ok"),)) in after
    for (name, labels) in after:
        if name.startswith("berth_http_"):
            route = dict(labels).get("route")
            assert route is None or route.replace("_", "").isalpha(), (name, labels)


def test_token_when_configured(tmp_path):
    token = "metrics-" + os.urandom(8).hex()
    reg = Registry("berth", tmp_path / "with-token", env={"BERTH_METRICS_TOKEN": token}).start()
    try:
        r = requests.get(reg.url("/metrics"), timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer ")
        r = requests.get(reg.url("/metrics"), headers={"Authorization": "Bearer wrong"}, timeout=30)
        assert r.status_code == 403
        samples, _ = scrape(reg, token)
        assert value(samples, "berth_http_requests_total", route="metrics", method="GET", status="401") == 1
    finally:
        reg.assert_clean_exit(reg.stop())
