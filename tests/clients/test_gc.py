"""Reclaiming space with real clients: skopeo pushes images sharing layers into several
repositories, tags go, `berth adm prune images` and garbage collection run, and the data
directory shrinks by exactly the bytes of what went while everything kept still pulls."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from clientlib import Registry, Skopeo, berth_binary, check_image, run

IMPL = os.environ.get("REGISTRY_IMPL", "berth")
pytestmark = pytest.mark.skipif(IMPL != "berth", reason="berth's own pruning and garbage collection")


def du_bytes(path) -> int:
    """Apparent size in bytes of everything under path, as `du -sb` reports it."""
    out = subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.split()[0])


def random_image(layout: Path, size: int) -> None:
    """An OCI layout with one image (ref `big`): a config and one gzip layer holding `size`
    random bytes, so what it frees stands out from the metadata store's own growth."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    layer = gzip.compress(raw.getvalue(), compresslevel=1)
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    config = put(json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)}],
    }).encode())
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "big"}}]}))


def berth(reg: Registry, *args: str) -> str:
    return run([berth_binary(), "--server", f"http://{reg.host}", *args]).stdout


def test_prune_and_gc_shrink_the_data_directory(tmp_path, images):
    reg = Registry(IMPL, tmp_path / "gc", env={"BERTH_GC_DELAY_SECS": "0", "BERTH_GC_INTERVAL_SECS": "1"})
    reg.start()
    try:
        sk = Skopeo(reg)
        layout = "oci:%s:" % images.path
        sk.copy(layout + "busybox", sk.ref("gc/one:v1"))
        sk.copy(layout + "busybox", sk.ref("gc/two:v1"))  # shares every layer with gc/one
        sk.copy(layout + "busybox-arm64", sk.ref("gc/two:arm"))
        random_image(tmp_path / "big", 4 << 20)
        sk.copy("oci:%s:big" % (tmp_path / "big"), sk.ref("gc/three:big"))

        def blobs(ref, path=images.path):
            index = json.loads((Path(path) / "index.json").read_text())
            d = next(m["digest"] for m in index["manifests"]
                     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref)
            m = json.loads((Path(path) / "blobs" / "sha256" / d[7:]).read_bytes())
            return {x["digest"]: x["size"] for x in [m["config"], *m["layers"]]}
        # What only the arm64 and the random image hold (busybox images share layers).
        kept = blobs("busybox")
        gone = {**blobs("busybox-arm64"), **blobs("big", tmp_path / "big")}
        arm_bytes = sum(size for d, size in gone.items() if d not in kept)
        assert arm_bytes > 4 << 20

        blobs_before, data_before = du_bytes(reg.data_dir / "blobs"), du_bytes(reg.data_dir)
        run(["skopeo", "delete", "--tls-verify=false", sk.ref("gc/one:v1")])
        run(["skopeo", "delete", "--tls-verify=false", sk.ref("gc/two:arm")])
        run(["skopeo", "delete", "--tls-verify=false", sk.ref("gc/three:big")])

        dry = berth(reg, "adm", "prune", "images", "--keep-younger-than=0s")
        assert dry.startswith("Dry run enabled"), dry
        assert du_bytes(reg.data_dir / "blobs") == blobs_before

        out = berth(reg, "adm", "prune", "images", "--keep-younger-than=0s", "--confirm")
        assert "Deleting images from server" in out, out
        deadline = time.monotonic() + 30
        while du_bytes(reg.data_dir / "blobs") > blobs_before - arm_bytes and time.monotonic() < deadline:
            berth(reg, "adm", "gc")
            time.sleep(0.5)
        freed = blobs_before - du_bytes(reg.data_dir / "blobs")
        # Exactly the arm64 image's own blobs: busybox's are still used by gc/two:v1.
        assert freed == arm_bytes, (freed, arm_bytes, out)
        # The metadata store grows a little with the deletions' own records.
        assert data_before - du_bytes(reg.data_dir) > arm_bytes * 0.9, (data_before, du_bytes(reg.data_dir))

        check_image(reg, "gc/two", "v1", expect_digest=images.digest("busybox"),
                    expect_diff_ids=images.config("busybox")["rootfs"]["diff_ids"])
        sk.copy(sk.ref("gc/two:v1"), "dir:%s" % (tmp_path / "pulled"))
        status = berth(reg, "adm", "gc", "status")
        assert "Blobs deleted:" in status, status
    finally:
        reg.assert_clean_exit(reg.stop())
