#!/usr/bin/env bash
# Builds a small, real container image offline as an OCI image layout, for berth's client tests.
#
#   scripts/make-test-image.sh [DIR]      (default DIR: ./test-image-layout)
#
# DIR then holds three references (see `umoci ls --layout DIR`):
#   DIR:busybox        linux/amd64 image: one gzip layer with Debian's static busybox in /bin, a few
#                      applet symlinks and /etc/berth-test.txt ("berth test image\n"); cmd /bin/sh
#   DIR:busybox-arm64  the same layer, config says linux/arm64 (a multi-arch fixture only: the
#                      binary inside is still amd64)
#   DIR:multi          an OCI image index (application/vnd.oci.image.index.v1+json) over both, with
#                      platform fields
# Needs umoci, busybox-static and python3 (scripts/install-deps.sh installs them). Runs in about a
# second and touches nothing outside DIR and a temp dir. Digests differ between runs (umoci stamps
# the creation time).
set -euo pipefail

layout=$(realpath -m "${1:-test-image-layout}")
busybox_bin=${BUSYBOX_BIN:-/bin/busybox}
for tool in umoci python3; do
  command -v "$tool" >/dev/null || { echo "make-test-image: $tool not found (run scripts/install-deps.sh)" >&2; exit 1; }
done
[ -x "$busybox_bin" ] || { echo "make-test-image: $busybox_bin missing (apt-get install busybox-static)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -rf "$layout"
umoci init --layout "$layout"
umoci new --image "$layout:busybox"
umoci unpack --rootless --image "$layout:busybox" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc"
cp "$busybox_bin" "$rootfs/bin/busybox"
for applet in sh ls echo cat; do ln -sf busybox "$rootfs/bin/$applet"; done
printf 'berth test image\n' > "$rootfs/etc/berth-test.txt"
umoci repack --image "$layout:busybox" "$work/bundle"
umoci config --image "$layout:busybox" --config.cmd /bin/sh --architecture amd64 --os linux \
  --author "berth tests"
# Same layer, a second config: umoci writes a new manifest under the new tag.
umoci config --image "$layout:busybox" --tag busybox-arm64 --architecture arm64 --os linux

# umoci has no index builder: write the OCI index by hand and register it as DIR:multi.
python3 - "$layout" <<'PY'
import hashlib, json, sys

layout = sys.argv[1]
index_path = f"{layout}/index.json"
index = json.load(open(index_path))
REF = "org.opencontainers.image.ref.name"
by_tag = {m["annotations"][REF]: m for m in index["manifests"]}

def blob(digest):
    algo, hexd = digest.split(":")
    with open(f"{layout}/blobs/{algo}/{hexd}", "rb") as f:
        return json.load(f)

children = []
for tag in ("busybox", "busybox-arm64"):
    desc = by_tag[tag]
    config = blob(blob(desc["digest"])["config"]["digest"])
    children.append({
        "mediaType": desc["mediaType"],
        "digest": desc["digest"],
        "size": desc["size"],
        "platform": {"architecture": config["architecture"], "os": config["os"]},
    })
body = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": children,
}, separators=(",", ":")).encode()
hexd = hashlib.sha256(body).hexdigest()
with open(f"{layout}/blobs/sha256/{hexd}", "wb") as f:
    f.write(body)
index["manifests"] = [m for m in index["manifests"] if m["annotations"][REF] != "multi"]
index["manifests"].append({
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "digest": "sha256:" + hexd,
    "size": len(body),
    "annotations": {REF: "multi"},
})
with open(index_path, "w") as f:
    json.dump(index, f)
PY
umoci gc --layout "$layout"
umoci ls --layout "$layout"
