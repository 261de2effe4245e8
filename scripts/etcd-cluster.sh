#!/usr/bin/env bash
# An etcd cluster on 127.0.0.1 for tests (Debian's etcd-server): N members on free ports.
#
#   scripts/etcd-cluster.sh start DIR [N]   starts N (3) members under DIR, waits for a leader,
#                                           writes DIR/env (BERTH_METADATA_STORE=etcd://...)
#   scripts/etcd-cluster.sh stop DIR        stops them by PID (DIR/m*/pid)
#
# The binary: $ETCD_BIN, else etcd on PATH.
set -euo pipefail

etcd=${ETCD_BIN:-$(command -v etcd || true)}
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n '2,8p' "$0"; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case "$cmd" in
start)
  n=${3:-3}
  [ -n "$etcd" ] && [ -x "$etcd" ] || { echo "etcd-cluster: etcd missing (run scripts/install-deps.sh)" >&2; exit 1; }
  mkdir -p "$dir"
  token="berth-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  declare -a cport pport
  initial=""
  for i in $(seq 0 $((n - 1))); do
    cport[i]=$(free_port); pport[i]=$(free_port)
    initial+="${initial:+,}m$i=http://127.0.0.1:${pport[i]}"
  done
  endpoints=""
  for i in $(seq 0 $((n - 1))); do
    root="$dir/m$i"
    mkdir -p "$root"
    "$etcd" --name "m$i" --data-dir "$root/data" \
      --listen-client-urls "http://127.0.0.1:${cport[i]}" --advertise-client-urls "http://127.0.0.1:${cport[i]}" \
      --listen-peer-urls "http://127.0.0.1:${pport[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pport[i]}" \
      --initial-cluster "$initial" --initial-cluster-token "$token" --initial-cluster-state new \
      --heartbeat-interval 100 --election-timeout 1000 \
      >"$root/log" 2>&1 </dev/null &
    echo $! >"$root/pid"
    endpoints+="${endpoints:+,}127.0.0.1:${cport[i]}"
  done
  for i in $(seq 0 $((n - 1))); do
    ok=""
    for _ in $(seq 300); do
      if python3 -c 'import sys, urllib.request as u; sys.exit(b"\"health\":\"true\"" not in u.urlopen(sys.argv[1], timeout=2).read())' \
           "http://127.0.0.1:${cport[i]}/health" 2>/dev/null; then ok=1; break; fi
      sleep 0.1
    done
    [ -n "$ok" ] || { echo "etcd-cluster: member m$i not healthy:" >&2; tail -20 "$dir/m$i/log" >&2; exit 1; }
  done
  echo "export BERTH_METADATA_STORE=etcd://$endpoints/berth" >"$dir/env"
  echo "etcd-cluster: $n members at $endpoints"
  ;;
stop)
  for p in "$dir"/m*/pid; do
    [ -f "$p" ] || continue
    kill "$(cat "$p")" 2>/dev/null || true
  done
  sleep 0.5
  for p in "$dir"/m*/pid; do
    [ -f "$p" ] || continue
    kill -9 "$(cat "$p")" 2>/dev/null || true
    rm -f "$p"
  done
  # The stored data goes (a run leaves gigabytes of blobs behind otherwise); the logs stay.
  rm -rf "$dir"/m*/data
  ;;
*) sed -n '2,8p' "$0"; exit 2 ;;
esac
