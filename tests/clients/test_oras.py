"""oras-py: push an artifact of two files with an artifactType and pull it back; push a second
artifact whose subject is an image and find it through the referrers API."""

import hashlib
import json
import os

import oras.client
import oras.oci
import requests

from clientlib import OCI_INDEX, OCI_MANIFEST, berth_only, ns, sha256_bytes

CLIENTS = ns("clients")
REPO = f"{CLIENTS}/oras"
ARTIFACT_TYPE = "application/vnd.berth.test.bundle.v1"
SIG_TYPE = "application/vnd.berth.test.signature.v1"


class ArtifactClient(oras.client.OrasClient):
    """OrasClient that also writes the OCI 1.1 manifest field artifactType (oras-py 0.2's push
    has no parameter for it; it does take a subject)."""

    artifact_type = None

    def upload_manifest(self, manifest, container):
        if self.artifact_type:
            manifest = dict(manifest, artifactType=self.artifact_type)
        return super().upload_manifest(manifest, container)


def _client(registry, artifact_type=None) -> ArtifactClient:
    c = ArtifactClient(hostname=registry.host, insecure=True)
    c.artifact_type = artifact_type
    return c


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_oras_push_pull_artifact(registry, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "readme.txt").write_text("berth oras artifact\n")
    (src / "data.bin").write_bytes(os.urandom(300_000))
    target = f"{registry.host}/{REPO}:v1"

    client = _client(registry, ARTIFACT_TYPE)
    resp = client.push(target=target, files=[str(src / "readme.txt"), f"{src / 'data.bin'}:application/octet-stream"],
                       disable_path_validation=True, manifest_annotations={"org.berth.test": "oras"}, quiet=True)
    assert resp.status_code == 201, resp.text
    pushed = resp.headers.get("Docker-Content-Digest")

    manifest = client.get_manifest(target)
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["annotations"]["org.berth.test"] == "oras"
    titles = {l["annotations"]["org.opencontainers.image.title"]: l for l in manifest["layers"]}
    assert set(titles) == {"readme.txt", "data.bin"}
    assert titles["data.bin"]["mediaType"] == "application/octet-stream"
    for name, layer in titles.items():
        assert layer["digest"] == "sha256:" + _sha(src / name)
        assert layer["size"] == (src / name).stat().st_size

    raw = requests.get(registry.url(f"/v2/{REPO}/manifests/v1"), headers={"Accept": OCI_MANIFEST}, timeout=30)
    assert raw.status_code == 200
    assert raw.headers["Content-Type"].split(";")[0] == OCI_MANIFEST
    if pushed:
        assert sha256_bytes(raw.content) == pushed

    out = tmp_path / "out"
    files = client.pull(target=target, outdir=str(out))
    assert sorted(os.path.basename(f) for f in files) == ["data.bin", "readme.txt"]
    for name in ("readme.txt", "data.bin"):
        assert _sha(out / name) == _sha(src / name), f"{name} differs after the round trip"


def test_oras_referrers(registry, skopeo, images, tmp_path):
    # The subject: the busybox image.
    skopeo.copy("oci:%s:busybox" % images.path, skopeo.ref(f"{REPO}:image"))
    image_digest = images.digest("busybox")
    image_raw = images.blob(image_digest)
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=image_digest, size=len(image_raw))

    sig = tmp_path / "signature.json"
    sig.write_text(json.dumps({"signed": image_digest}))
    client = _client(registry, SIG_TYPE)
    resp = client.push(target=f"{registry.host}/{REPO}:sig", files=[str(sig)], subject=subject,
                       disable_path_validation=True, quiet=True)
    assert resp.status_code == 201, resp.text
    r = requests.get(registry.url(f"/v2/{REPO}/manifests/sig"), headers={"Accept": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 200
    sig_raw = r.content
    sig_digest = sha256_bytes(sig_raw)
    sig_manifest = r.json()
    assert sig_manifest["subject"] == {"mediaType": OCI_MANIFEST, "digest": image_digest, "size": len(image_raw)}
    assert sig_manifest["artifactType"] == SIG_TYPE

    if not berth_only(registry, "referrers API and OCI-Subject header"):
        return
    r = requests.get(registry.url(f"/v2/{REPO}/referrers/{image_digest}"), timeout=30)
    assert r.status_code == 200, f"GET /v2/{REPO}/referrers/{image_digest}: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].split(";")[0] == OCI_INDEX
    idx = r.json()
    assert idx["schemaVersion"] == 2 and idx["mediaType"] == OCI_INDEX
    found = [m for m in idx["manifests"] if m["digest"] == sig_digest]
    assert found, f"artifact {sig_digest} not among the referrers of {image_digest}: {idx}"
    assert found[0]["artifactType"] == SIG_TYPE
    assert found[0]["size"] == len(sig_raw)
    assert found[0]["mediaType"] == OCI_MANIFEST

    # Filtered by artifactType (optional in the spec: a registry that filters says so in
    # OCI-Filters-Applied; one that does not returns the whole list), and a digest with no referrers.
    for want, expect in (("application/vnd.berth.none", []), (SIG_TYPE, [sig_digest])):
        r = requests.get(registry.url(f"/v2/{REPO}/referrers/{image_digest}"),
                         params={"artifactType": want}, timeout=30)
        assert r.status_code == 200, f"referrers?artifactType={want}: {r.status_code} {r.text}"
        got = [m["digest"] for m in r.json()["manifests"]]
        if "artifactType" in r.headers.get("OCI-Filters-Applied", ""):
            assert got == expect, f"referrers?artifactType={want}: {got}, expected {expect}"
        else:
            assert sig_digest in got, f"unfiltered referrers lack {sig_digest}: {r.text}"
    r = requests.get(registry.url(f"/v2/{REPO}/referrers/sha256:{'0' * 64}"), timeout=30)
    assert r.status_code == 200 and r.json()["manifests"] == [], \
        f"referrers of an unknown digest must be 200 with an empty index: {r.status_code} {r.text}"

    # Checked last so that a missing header does not hide the referrers results above.
    assert resp.headers.get("OCI-Subject") == image_digest, \
        f"a manifest PUT with a subject must answer OCI-Subject: <subject digest>; got headers {dict(resp.headers)}"
