#!/usr/bin/env bash
# A Garage cluster on 127.0.0.1 for tests (real distributed S3): N nodes, replication factor N,
# one key and one bucket.
#
#   scripts/garage-cluster.sh start DIR [N]   starts N (3) nodes under DIR, writes DIR/env
#                                             (BERTH_BLOB_STORE, BERTH_S3_ENDPOINT, ...,
#                                             AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
#   scripts/garage-cluster.sh stop DIR        stops them by PID (DIR/node*/pid)
#
# The binary: $GARAGE_BIN, else ~/.cache/berth-tools/garage/bin/garage (scripts/install-deps.sh
# builds it once).
set -euo pipefail

garage=${GARAGE_BIN:-$HOME/.cache/berth-tools/garage/bin/garage}
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,12p' "$0"; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Retries a garage command until it succeeds (nodes still starting), for 30 s.
retry() {
  local i
  for i in $(seq 150); do
    if out=$("$garage" "$@" 2>&1); then echo "$out"; return 0; fi
    sleep 0.2
  done
  echo "garage $*: $out" >&2
  return 1
}

case "$cmd" in
start)
  n=${3:-3}
  [ -x "$garage" ] || { echo "garage-cluster: $garage missing (run scripts/install-deps.sh)" >&2; exit 1; }
  mkdir -p "$dir"
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for i in $(seq 0 $((n - 1))); do
    root="$dir/node$i"
    mkdir -p "$root"
    # A port picked free may be taken before the node binds it (other suites run alongside):
    # a node that exits at once gets new ports, as in tests/integration/garage.rs.
    attempt=0
    while :; do
      rpc=$(free_port); s3=$(free_port); admin=$(free_port)
      cat >"$root/garage.toml" <<EOF
metadata_dir = "$root/meta"
data_dir = "$root/data"
db_engine = "sqlite"
replication_factor = $n
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"
[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
      RUST_LOG=warn "$garage" -c "$root/garage.toml" server >"$root/log" 2>&1 &
      pid=$!
      sleep 0.3
      if kill -0 "$pid" 2>/dev/null; then break; fi
      wait "$pid" || true
      attempt=$((attempt + 1))
      if [ "$attempt" -ge 5 ]; then
        echo "garage-cluster: node $i keeps exiting at start; see $root/log" >&2
        exit 1
      fi
    done
    echo "$pid" >"$root/pid"
    echo "$rpc" >"$root/rpc_port"; echo "$s3" >"$root/s3_port"
  done
  c0="$dir/node0/garage.toml"
  for i in $(seq 0 $((n - 1))); do
    id=$(retry -c "$dir/node$i/garage.toml" node id -q | tail -1 | cut -d@ -f1)
    [ "$i" -gt 0 ] && retry -c "$c0" node connect "$id@127.0.0.1:$(cat "$dir/node$i/rpc_port")" >/dev/null
    retry -c "$c0" layout assign -z "dc$i" -c 1G "$id" >/dev/null
  done
  retry -c "$c0" layout apply --version 1 >/dev/null
  key=$(retry -c "$c0" key create berth-test)
  key_id=$(echo "$key" | awk -F': *' '/Key ID:/ {print $2; exit}')
  key_secret=$(echo "$key" | awk -F': *' '/Secret key:/ {print $2; exit}')
  retry -c "$c0" bucket create berth >/dev/null
  retry -c "$c0" bucket allow --read --write --owner berth --key berth-test >/dev/null
  cat >"$dir/env" <<EOF
export BERTH_BLOB_STORE=s3://berth/test
export BERTH_S3_ENDPOINT=http://127.0.0.1:$(cat "$dir/node0/s3_port")
export BERTH_S3_REGION=garage
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$key_secret
EOF
  echo "garage-cluster: $n nodes up, settings in $dir/env"
  ;;
stop)
  for p in "$dir"/node*/pid; do
    [ -f "$p" ] || continue
    kill "$(cat "$p")" 2>/dev/null || true
  done
  sleep 0.5
  for p in "$dir"/node*/pid; do
    [ -f "$p" ] || continue
    kill -9 "$(cat "$p")" 2>/dev/null || true
    rm -f "$p"
  done
  # The stored data goes (a run leaves gigabytes of blobs behind otherwise); the logs stay.
  rm -rf "$dir"/node*/meta "$dir"/node*/data
  ;;
*) sed -n '2,12p' "$0"; exit 2 ;;
esac
