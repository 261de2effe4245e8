"""HTTPS: `berth serve --tls-cert --tls-key` with a CA made here by the openssl command-line tool;
skopeo trusts it through `--dest-cert-dir DIR` (DIR/ca.crt) and fails without it; openssl s_client
sees TLS 1.2 and 1.3 with ALPN h2 and no TLS 1.1; with `--tls-client-ca`, skopeo pushes with its
client certificate (DIR/client.cert + DIR/client.key) and without one, while a client certificate
from another CA is refused in the handshake (checked with curl-like Python requests: Go clients
such as skopeo only send a certificate from a CA the server names, and otherwise connect without).

berth-only: skipped on another registry (REGISTRY_IMPL=docker-registry).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from clientlib import REPORT, Registry, run, run_fails, sha256_bytes

REPO = "clients/tls"


@pytest.fixture(autouse=True)
def _berth_only(impl):
    if impl != "berth":
        REPORT.append(f"not checked on {impl} (berth-only): TLS flags ({__name__})")
        pytest.skip("--tls-cert/--tls-key are berth flags")


# ---- certificates -------------------------------------------------------------------------------

def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    return crt, key


def issue(d: Path, ca: tuple[Path, Path], name: str, cn: str, ext: str) -> tuple[Path, Path]:
    """A certificate for cn signed by ca, with the X.509v3 extensions in ext."""
    crt, key, csr, extfile = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", csr, "-subj", f"/CN={cn}"])
    extfile.write_text(ext)
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
         "-out", crt, "-days", "2", "-extfile", extfile])
    return crt, key


SERVER_EXT = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
CLIENT_EXT = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "berth-test-ca")
    clients_ca = make_ca(d, "berth-clients-ca")
    other_ca = make_ca(d, "someone-elses-ca")
    return {
        "dir": d,
        "ca": ca,
        "clients_ca": clients_ca,
        "server": issue(d, ca, "server", "127.0.0.1", SERVER_EXT),
        "alice": issue(d, clients_ca, "alice", "alice", CLIENT_EXT),
        "mallory": issue(d, other_ca, "mallory", "alice", CLIENT_EXT),
    }


def cert_dir(d: Path, ca: Path, client: tuple[Path, Path] | None = None) -> Path:
    """A containers-image certs directory: ca.crt, and client.cert + client.key if given."""
    d.mkdir(parents=True)
    shutil.copy(ca, d / "ca.crt")
    if client:
        shutil.copy(client[0], d / "client.cert")
        shutil.copy(client[1], d / "client.key")
    return d


@pytest.fixture
def tls_registry(tmp_path, pki):
    """Starts berth with TLS (and the given extra flags); stops it with a clean exit at the end."""
    regs = []

    def start(*extra) -> Registry:
        reg = Registry("berth", tmp_path / f"reg{len(regs)}",
                       extra_args=["--tls-cert", pki["server"][0], "--tls-key", pki["server"][1], *extra])
        regs.append(reg)
        return reg.start()

    yield start
    for reg in regs:
        reg.assert_clean_exit(reg.stop())


def s_client(host: str, *args) -> subprocess.CompletedProcess:
    return run(["openssl", "s_client", "-connect", host, *args], check=False, timeout=30, input="")


# ---- tests --------------------------------------------------------------------------------------

def test_skopeo_over_https_with_and_without_the_ca(tls_registry, pki, images, tmp_path):
    reg = tls_registry()
    log = reg.log_text()
    assert "tls enabled" in log and str(pki["server"][0]) in log, log
    certs = cert_dir(tmp_path / "certs", pki["ca"][0])
    dest = f"docker://{reg.host}/{REPO}:v1"
    src = f"oci:{images.path}:busybox"

    # Without the CA the copy must fail on the certificate, not silently fall back to HTTP.
    failed = run_fails(["skopeo", "copy", "--dest-tls-verify=true", src, dest], timeout=120)
    assert "certificate" in failed.stderr or "x509" in failed.stderr, failed.stderr

    run(["skopeo", "copy", "--dest-tls-verify=true", "--dest-cert-dir", certs, src, dest], timeout=180)
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--cert-dir", certs, f"docker://{reg.host}/{REPO}:v1"],
                         capture_output=True, timeout=120, stdin=subprocess.DEVNULL, check=True).stdout
    assert sha256_bytes(raw) == images.digest("busybox")

    out = tmp_path / "out"
    run(["skopeo", "copy", "--src-cert-dir", certs, dest, f"oci:{out}:v1"], timeout=180)
    assert (out / "index.json").exists()


def test_protocol_versions_and_alpn(tls_registry, pki):
    reg = tls_registry()
    ca = str(pki["ca"][0])
    for flag, version in (("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")):
        p = s_client(reg.host, "-CAfile", ca, "-verify_return_error", flag, "-alpn", "h2,http/1.1")
        text = p.stdout + p.stderr
        assert f"New, {version}, Cipher is" in text, text
        assert "ALPN protocol: h2" in text, text
        assert "Verify return code: 0 (ok)" in text, text
    # TLS 1.1 (the client allowed to offer it at security level 0): the handshake fails with an
    # alert (handshake_failure: OpenSSL's TLS 1.1 hello lacks the signature_algorithms extension
    # rustls wants; the Rust test sees protocol_version for a 1.1 hello that has it).
    p = s_client(reg.host, "-CAfile", ca, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    text = p.stdout + p.stderr
    assert p.returncode != 0, text
    assert "Cipher is (NONE)" in text and "alert" in text, text


def test_client_certificates_optional_but_verified(tls_registry, pki, images, tmp_path):
    reg = tls_registry("--tls-client-ca", pki["clients_ca"][0])
    src = f"oci:{images.path}:busybox"
    for name, client in (("alice", pki["alice"]), ("anonymous", None)):
        certs = cert_dir(tmp_path / name, pki["ca"][0], client)
        run(["skopeo", "copy", "--dest-cert-dir", certs, src, f"docker://{reg.host}/{REPO}-mtls:{name}"],
            timeout=180)

    url, ca = f"https://{reg.host}/v2/", str(pki["ca"][0])
    alice, mallory = (tuple(map(str, pki[name])) for name in ("alice", "mallory"))
    assert requests.get(url, verify=ca, cert=alice, timeout=15).status_code == 200
    assert requests.get(url, verify=ca, timeout=15).status_code == 200
    with pytest.raises(requests.exceptions.SSLError, match="(?i)unknown ca"):
        requests.get(url, verify=ca, cert=mallory, timeout=15)
