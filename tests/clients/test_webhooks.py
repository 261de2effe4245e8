"""Webhooks as independent implementations see them: every delivery's Standard Webhooks signature
verifies with the `standardwebhooks` package, and every body parses as a CloudEvent with the
`cloudevents` SDK; one event per istag change, in order.

berth-only (skipped on another registry). The module runs its own berth with
--webhook-allow-private, since the receiver listens on loopback.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time

import pytest
import requests
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks import Webhook

from clientlib import REPORT, Registry

SECRET = "whsec_MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
CHANGES = 20


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).got.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def berth(tmp_path_factory, impl):
    if impl != "berth":
        REPORT.append(f"not checked on {impl} (berth-only): webhooks")
        pytest.skip("webhooks are berth-only")
    reg = Registry(impl, tmp_path_factory.mktemp("registry-webhooks"),
                   extra_args=["--webhook-allow-private"]).start()
    yield reg
    reg.assert_clean_exit(reg.stop())


def push(reg, repo: str, tag: str, seed: str) -> str:
    """A config and one layer by monolithic upload, then an OCI manifest; returns its digest."""
    descriptors = []
    for kind, data in (("config", json.dumps({"seed": seed}).encode()), ("layer", f"layer {seed}".encode())):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(reg.url(f"/v2/{repo}/blobs/uploads/"), params={"digest": digest}, data=data, timeout=15)
        assert r.status_code == 201, r.text
        descriptors.append({"mediaType": "application/vnd.oci.image.config.v1+json" if kind == "config"
                            else "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(data)})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": descriptors[0], "layers": descriptors[1:]}).encode()
    r = requests.put(reg.url(f"/v2/{repo}/manifests/{tag}"), data=manifest, timeout=15,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_signatures_verify_and_bodies_are_cloudevents(berth, receiver):
    url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    r = requests.post(berth.url("/apis/berth.io/v1/namespaces/hooks/webhooks"), timeout=15, json={
        "kind": "Webhook", "apiVersion": "berth.io/v1", "metadata": {"name": "ci"},
        "spec": {"url": url, "secret": SECRET, "events": ["imagestreamtag.updated"]},
    })
    assert r.status_code == 201, r.text
    assert "secret" not in r.json()["spec"]

    expected = [push(berth, "hooks/app", "latest", f"seed-{i}") for i in range(CHANGES)]
    deadline = time.time() + 30
    while len(_Receiver.got) < CHANGES and time.time() < deadline:
        time.sleep(0.05)
    assert len(_Receiver.got) == CHANGES, f"{len(_Receiver.got)} of {CHANGES} deliveries"

    wh = Webhook(SECRET)
    images = []
    for headers, body in _Receiver.got:
        wh.verify(body, headers)  # raises WebhookVerificationError unless a signature matches
        event = from_http(HTTPMessage(headers={k.lower(): v for k, v in headers.items()}, body=body),
                          JSONFormat())
        assert event.get_type() == "io.berth.imagestreamtag.updated"
        assert event.get_subject() == "hooks/app:latest"
        assert event.get_id() == headers["webhook-id"]
        data = event.get_data()
        data = json.loads(data) if isinstance(data, (bytes, str)) else data
        images.append(data["image"])
    assert images == expected, "one event per change, in order"
    REPORT.append(f"webhooks: {CHANGES} deliveries verified with standardwebhooks and parsed with cloudevents")
