"""buildah: from scratch, copy a file, commit --format oci, push; pull back with skopeo and compare
the file extracted from the layer."""

import json

from clientlib import OCI_MANIFEST, OciLayout, check_image, media_type_of, ns, run, sha256_bytes, tar_members

CLIENTS = ns("clients")
REPO = f"{CLIENTS}/buildah"


def test_buildah_scratch_commit_push(registry, skopeo, tmp_path):
    root = tmp_path / "buildah"
    (root / "tmp").mkdir(parents=True)
    env = {"TMPDIR": str(root / "tmp")}
    bah = ["buildah", "--root", root / "storage", "--runroot", root / "run", "--storage-driver", "vfs"]

    payload = b"berth buildah payload\n" + bytes(range(256)) * 64
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)

    ctr = run([*bah, "from", "scratch"], env=env).stdout.strip().splitlines()[-1]
    try:
        run([*bah, "copy", ctr, src, "/data/payload.bin"], env=env)
        run([*bah, "config", "--cmd", "/data/payload.bin", "--label", "org.berth.test=buildah",
             "--os", "linux", "--arch", "amd64", ctr], env=env)
        image_id = run([*bah, "commit", "--format", "oci", ctr, "berth-buildah-test"], env=env).stdout.strip().splitlines()[-1]
        digestfile = tmp_path / "digest"
        run([*bah, "push", "--tls-verify=false", "--digestfile", digestfile, "berth-buildah-test",
             f"docker://{registry.host}/{REPO}:v1"], env=env)
    finally:
        run([*bah, "rm", "--all"], env=env, check=False)
        run([*bah, "rmi", "--all", "--force"], env=env, check=False)
    pushed = digestfile.read_text().strip()

    raw = skopeo.inspect_raw(f"{REPO}:v1")
    assert sha256_bytes(raw) == pushed
    assert media_type_of(registry, REPO, "v1") == OCI_MANIFEST
    manifest = json.loads(raw)
    assert "sha256:" + image_id.removeprefix("sha256:") == manifest["config"]["digest"], \
        "buildah's image ID is its config digest; the registry must keep that config"
    check_image(registry, REPO, "v1", expect_digest=pushed, expect_arch="amd64")

    out = tmp_path / "out"
    skopeo.copy(skopeo.ref(f"{REPO}:v1"), f"oci:{out}:v1")
    pulled = OciLayout(out)
    assert pulled.digest("v1") == pushed
    config = pulled.config("v1")
    assert config["config"]["Labels"]["org.berth.test"] == "buildah"
    assert config["config"]["Cmd"] == ["/data/payload.bin"]
    files = {}
    for layer in pulled.manifest("v1")["layers"]:
        files.update(tar_members(pulled.blob(layer["digest"])))
    assert files.get("data/payload.bin") == payload, f"layer files: {sorted(files)}"
