#!/usr/bin/env bash
# Installs the tools berth's test suite drives (real registry clients and a peer registry) and a
# Python venv at .venv for the pytest client scenarios. Idempotent: when everything is present it
# only checks and returns (well under a second for apt, a few seconds for the venv check).
#
# Usage: scripts/install-deps.sh        (run as root, or with sudo available, on Debian 12)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive

# Python packages for tests/clients; majors pinned, minor/patch float.
PIP_REQS=(
  "pytest>=8,<10"
  "oras>=0.2.25,<0.3"
  "kubernetes>=30,<38"
  "requests>=2.31,<3"
  # The reference Prometheus text parser: test_metrics.py scrapes /metrics with it.
  "prometheus_client>=0.20,<1"
  # Independent checks of webhook deliveries (test_webhooks.py): Standard Webhooks signatures
  # and the CloudEvents SDK (2.x: cloudevents.core).
  "standardwebhooks>=1.0,<2"
  "cloudevents>=2,<3"
  # Drives chromium through chromedriver for the console's browser tests (test_console.py).
  "selenium>=4.15,<5"
)

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo" >&2; exit 1; }
  sudo_cmd=(sudo -E)
fi

# ---- apt packages: "package:command-that-proves-it" (empty command = check dpkg only)
apt_wanted=(
  "skopeo:skopeo"
  "podman:podman"
  "buildah:buildah"
  "umoci:umoci"
  "busybox-static:"
  "docker.io:dockerd"
  "docker-compose:docker-compose"
  "docker-registry:docker-registry"
  "python3-venv:"
  # The console's browser tests (tests/clients/test_console.py) drive Debian's Chromium.
  "chromium:chromium"
  "chromium-driver:chromedriver"
  # The etcd metadata backend: protoc and protobuf's well-known types compile etcd-client's
  # protocol at build time; etcd (server and etcdctl) runs in the tests.
  "protobuf-compiler:protoc"
  "libprotobuf-dev:"
  "etcd-server:etcd"
  "etcd-client:etcdctl"
)

dpkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for entry in "${apt_wanted[@]}"; do
  pkg=${entry%%:*}; cmd=${entry#*:}
  if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1 && dpkg_installed "$pkg"; then
    continue
  fi
  if [ -z "$cmd" ] && dpkg_installed "$pkg"; then
    continue
  fi
  # A tool found on PATH but not from the Debian package (e.g. a docker CLI shipped elsewhere)
  # still gets the package: the suite needs the daemon and the known versions.
  missing+=("$pkg")
done
# busybox-static must really provide the static binary the image builder copies.
if [ ! -x /bin/busybox ] && [[ ! " ${missing[*]} " =~ " busybox-static " ]]; then
  missing+=(busybox-static)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # docker.io's postinst may try to start a daemon through systemd/init; nothing to do without one.
else
  echo "install-deps: apt packages present"
fi

# ---- kubectl for tests/integration/kubectl.rs: Debian's kubernetes-client (1.20), and a newer
# kubectl if the machine has one. Debian's package conflicts with a `kubectl` package from
# elsewhere; then it is unpacked to a private path ($repo/.deps) instead of installed.
kube_private="$repo/.deps/kubernetes-client"
if dpkg_installed kubernetes-client; then
  :
elif command -v kubectl >/dev/null 2>&1; then
  if [ ! -x "$kube_private/usr/bin/kubectl" ]; then
    echo "install-deps: unpacking kubernetes-client to $kube_private (a kubectl is installed)"
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null 2>&1); then
      "${sudo_cmd[@]}" apt-get update -qq
      (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null)
    fi
    mkdir -p "$kube_private"
    dpkg -x "$tmp"/kubernetes-client_*.deb "$kube_private"
    rm -rf "$tmp"
  fi
else
  echo "install-deps: apt-get install kubernetes-client"
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi

# ---- Python venv for the client scenarios
# Prefer Debian's interpreter (python3-venv provides its ensurepip); fall back to PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
venv="$repo/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "install-deps: creating $venv with $py"
  rm -rf "$venv"
  "$py" -m venv "$venv"
fi

# Check the requirements with importlib.metadata + packaging-free version compare (fast path).
if ! "$venv/bin/python" - "${PIP_REQS[@]}" <<'PY' >/dev/null 2>&1
import sys, re
from importlib import metadata
def ver(s):
    return tuple(int(x) for x in re.findall(r"\d+", s)[:3])
for req in sys.argv[1:]:
    m = re.match(r"([A-Za-z0-9_.-]+)(.*)", req)
    name, spec = m.group(1), m.group(2)
    have = ver(metadata.version(name))
    for clause in filter(None, spec.split(",")):
        op, v = re.match(r"(>=|<=|==|<|>)(.*)", clause).groups()
        v = ver(v)
        ok = {">=": have >= v, "<=": have <= v, "==": have == v, "<": have < v, ">": have > v}[op]
        if not ok:
            sys.exit(1)
PY
then
  echo "install-deps: pip install ${PIP_REQS[*]}"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "${PIP_REQS[@]}"
else
  echo "install-deps: python venv ready"
fi

# ---- cargo-fuzz for test.sh's fuzz step (needs the nightly toolchain these machines carry);
# without it the step runs the parsers' property tests instead, so a failure here is not fatal.
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"
if command -v cargo >/dev/null && rustup toolchain list 2>/dev/null | grep -q '^nightly' \
   && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "install-deps: cargo install cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || echo "install-deps: cargo-fuzz did not install (the fuzz step falls back to property tests)" >&2
fi

# ---- Garage (a real distributed S3) for the object-storage tests: built once (about 7 minutes
# on 2 cores) into a cache that later runs reuse. GARAGE_BIN points at another build.
garage_root="$HOME/.cache/berth-tools/garage"
if [ -z "${GARAGE_BIN:-}" ] && [ ! -x "$garage_root/bin/garage" ]; then
  command -v cargo >/dev/null || { echo "install-deps: cargo is needed to build Garage" >&2; exit 1; }
  echo "install-deps: cargo install garage --version 2.5.0 --locked (once, into $garage_root)"
  cargo install garage --version 2.5.0 --locked --root "$garage_root" >/dev/null
fi

# Report versions (one line each) so a CI log shows what was tested against.
{
  echo "skopeo $(skopeo --version 2>/dev/null | awk '{print $3}')"
  echo "podman $(podman --version 2>/dev/null | awk '{print $3}')"
  echo "buildah $(buildah --version 2>/dev/null | awk '{print $3}')"
  echo "umoci $(umoci --version 2>/dev/null | awk '{print $3}')"
  echo "dockerd $(dockerd --version 2>/dev/null | awk '{print $3}' | tr -d ,)"
  echo "docker-compose $(docker-compose version --short 2>/dev/null)"
  echo "docker-registry $(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null)"
  echo "etcd $(etcd --version 2>/dev/null | awk 'NR==1 {print $3}')"
  echo "protoc $(protoc --version 2>/dev/null | awk '{print $2}')"
  echo "garage $("${GARAGE_BIN:-$garage_root/bin/garage}" --version 2>/dev/null | awk '{print $2}')"
  echo "kubectl $(kubectl version --client 2>/dev/null | head -1 | awk '{print $3}')"
  [ -x "$kube_private/usr/bin/kubectl" ] && echo "kubectl (private) $("$kube_private/usr/bin/kubectl" version --client --short 2>/dev/null | awk '{print $3}')"
  "$venv/bin/python" -c 'from importlib import metadata as m; print(" ".join(f"{p} {m.version(p)}" for p in ("pytest","oras","kubernetes","requests","prometheus_client","standardwebhooks","cloudevents")))'
} | paste -sd ';' | sed 's/;/; /g; s/^/install-deps: versions: /'
