"""A 1 GiB layer pushed with skopeo and pulled back, on a dedicated registry whose peak RSS
(VmHWM) must stay under 150 MiB: the server has to stream blobs, not buffer them."""

import os
import time

from clientlib import OciLayout, LayerSpec, Skopeo, berth_only, build_layout, sha256_file

SIZE = int(os.environ.get("BERTH_LARGE_BLOB_BYTES", 1 << 30))
RSS_LIMIT_MIB = 150
REPO = "clients/large"


def test_large_blob_push_pull_streams(new_registry, big_tmp, report):
    reg = new_registry("large-blob")
    skopeo = Skopeo(reg)
    work = big_tmp / "large"
    try:
        t0 = time.monotonic()
        # A real image: one tar+gzip layer (gzip level 0, the payload is random anyway) holding a
        # SIZE-byte file of os.urandom bytes, plus config, manifest, index.json and oci-layout.
        src = build_layout(work / "src", {"large": [LayerSpec(random_files={"data/random.bin": SIZE},
                                                               compresslevel=0)]})
        layer = src.manifest("large")["layers"][0]
        assert layer["size"] > SIZE
        t1 = time.monotonic()

        skopeo.copy(f"oci:{src.path}:large", skopeo.ref(f"{REPO}:v1"), timeout=600)
        t2 = time.monotonic()
        out = work / "out"
        skopeo.copy(skopeo.ref(f"{REPO}:v1"), f"oci:{out}:v1", timeout=600)
        t3 = time.monotonic()

        pulled = OciLayout(out)
        assert pulled.digest("v1") == src.digest("large")
        path = pulled.blob_path(layer["digest"])
        assert path.stat().st_size == layer["size"]
        assert sha256_file(path) == layer["digest"], "the pulled 1 GiB layer hashes differently"
        assert pulled.config("v1") == src.config("large")

        hwm_mib = reg.status_kib("VmHWM") / 1024
        mib = layer["size"] / (1 << 20)
        line = (f"large blob ({reg.impl}): {mib:.0f} MiB layer; generate {t1 - t0:.1f}s, push {t2 - t1:.1f}s "
                f"({mib / (t2 - t1):.0f} MiB/s), pull {t3 - t2:.1f}s ({mib / (t3 - t2):.0f} MiB/s); "
                f"peak RSS: {hwm_mib:.0f} MiB")
        report.append(line)
        print(line)
        if berth_only(reg, f"peak RSS < {RSS_LIMIT_MIB} MiB (reported only)"):
            assert hwm_mib < RSS_LIMIT_MIB, f"berth's peak RSS was {hwm_mib:.0f} MiB during a 1 GiB push+pull"
    finally:
        if not os.environ.get("KEEP_TMP"):
            import shutil
            shutil.rmtree(work, ignore_errors=True)
