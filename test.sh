#!/usr/bin/env bash
# berth's whole test suite, one command, on a fresh Debian 12 machine (run as root):
#
#   ./test.sh                 every step below, in order
#   ./test.sh clients         one step (or several: ./test.sh build clients), for development
#   PYTEST_ARGS="-k skopeo" ./test.sh clients      extra pytest arguments for the client step
#   REGISTRY_IMPL=docker-registry ./test.sh clients  the client scenarios against CNCF Distribution
#
# Steps (each ends with a line "== STEP: ok|FAILED|SKIPPED (...)"):
#   deps         scripts/install-deps.sh: apt packages (skopeo podman buildah umoci busybox-static
#                docker.io docker-compose docker-registry python3-venv, protobuf-compiler
#                libprotobuf-dev for the build, etcd-server etcd-client for the etcd tests) and the
#                .venv for pytest
#   build        cargo build --workspace
#   unit         cargo test --workspace (unit + integration tests)
#   conformance  target/debug/berth-conformance --berth-bin target/debug/berth (distribution-spec replay)
#   clients      .venv/bin/pytest tests/clients -v (skopeo, podman, buildah, docker, oras, 1 GiB blob,
#                concurrency against a real `berth serve`; the web console in headless chromium)
#   s3           the conformance replay and the skopeo/podman/docker/oras scenarios again, with
#                blobs on a 3-node Garage cluster (scripts/garage-cluster.sh; replication 3), then
#                a 1 GiB push in 1 MiB chunks with berth's peak RSS bounded (BERTH_BIG_TESTS=1)
#   etcd         two berth replicas sharing a 3-member etcd cluster (scripts/etcd-cluster.sh; Debian's
#                etcd-server) and a 3-node Garage cluster (scripts/garage-cluster.sh): the conformance
#                replay and the skopeo/podman scenarios through replica A and then through B, and
#                tests/clients/test_replicas.py across them (pushed through one, pulled through the
#                other; a watch on B; an upload started on A finished on B); manifests over 1 MiB
#                are expected to get 413 there (etcd's 1.5 MiB request limit)
#   bench        target/debug/berth-bench --quick (benchmark smoke test: every answer checked,
#                against docker-registry; the published figures come from a release run)
#   fuzz         cargo +nightly fuzz run, each target in fuzz/ for FUZZ_SECONDS (10) s; without
#                nightly or cargo-fuzz, the same parsers' property tests with PROPTEST_CASES
#                (20000) cases instead (recorded ok, the reason in the summary line). In a full
#                run the targets build in the background, at the lowest priority, from the end
#                of the build step on
#   compose      docker-compose -f docker-compose.yml config -q
# The exit status is non-zero if any step failed or was skipped (a missing tool counts as failure).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
[ -d "$HOME/.cargo/bin" ] && PATH="$HOME/.cargo/bin:$PATH"
export PATH CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# Binaries live under CARGO_TARGET_DIR when it is set (e.g. a shared build cache in CI).
tdir=${CARGO_TARGET_DIR:-target}
export BERTH_BIN=${BERTH_BIN:-$tdir/debug/berth}
# Client tests start the server from their own temp directories, so the path must be absolute.
case "$BERTH_BIN" in /*) ;; *) BERTH_BIN="$PWD/$BERTH_BIN" ;; esac

all_steps=(deps build unit conformance clients s3 etcd bench fuzz compose)
if [ $# -eq 0 ]; then
  steps=("${all_steps[@]}")
else
  steps=()
  for a in "$@"; do
    case "$a" in
      deps|build|unit|fuzz|conformance|clients|s3|etcd|bench|compose) steps+=("$a") ;;
      unit+integration|test) steps+=(unit) ;;
      -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
      *) echo "test.sh: unknown step '$a' (steps: ${all_steps[*]})" >&2; exit 2 ;;
    esac
  done
  # The binary steps need a build; add it (a no-op when up to date) unless asked for already.
  needs_build='\ (unit|conformance|clients|s3|etcd)\ '
  [ "${REGISTRY_IMPL:-berth}" = berth ] || needs_build='\ (unit|conformance)\ '
  if [[ " ${steps[*]} " =~ $needs_build ]] && [[ ! " ${steps[*]} " =~ " build " ]]; then
    steps=(build "${steps[@]}")
  fi
fi

logdir=$(mktemp -d "${TMPDIR:-/tmp}/berth-test.XXXXXX")
summary=()
n_ok=0 n_failed=0 n_skipped=0
build_ok=unknown

# record STEP STATUS DETAIL
step_start=$SECONDS
record() {
  local line="== $1: $2${3:+ ($3)} [$((SECONDS - step_start)) s]"
  summary+=("$line")
  echo "$line"
  case "$2" in
    ok) n_ok=$((n_ok + 1)) ;;
    FAILED) n_failed=$((n_failed + 1)) ;;
    *) n_skipped=$((n_skipped + 1)) ;;
  esac
}

banner() { echo; echo "==== $1 ===="; }

step_deps() {
  banner "deps: scripts/install-deps.sh"
  if scripts/install-deps.sh; then record deps ok; else record deps FAILED "scripts/install-deps.sh exited $?"; fi
}

step_build() {
  banner "build: cargo build --workspace"
  if ! command -v cargo >/dev/null; then build_ok=no; record build SKIPPED "cargo not found"; return; fi
  if cargo build --workspace; then build_ok=yes; record build ok
  else build_ok=no; record build FAILED "cargo build --workspace"; fi
}

need_build() { # STEP: true when the build is usable, else records STEP as skipped
  if [ "$build_ok" = no ]; then record "$1" SKIPPED "build failed"; return 1; fi
  return 0
}

step_unit() {
  banner "unit+integration: cargo test --workspace"
  need_build unit+integration || return
  local log="$logdir/unit.log"
  cargo test --workspace 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  # Sum the "test result:" lines of every test binary.
  local counts
  counts=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
                END { printf "%d passed, %d failed", p, f }' "$log")
  if [ "$rc" -eq 0 ]; then record unit+integration ok "$counts"; else record unit+integration FAILED "$counts; exit $rc"; fi
}

# Why the fuzzers cannot run here (nothing when they can).
fuzz_unavailable() {
  if ! command -v cargo >/dev/null; then echo "cargo not found"
  elif ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then echo "no nightly toolchain"
  elif ! cargo +nightly fuzz --version >/dev/null 2>&1; then echo "cargo-fuzz not installed"
  fi
}

# The fuzz targets build in a workspace of their own with their own flags (release, ASan,
# coverage): about 9 minutes of CPU, as long as the main build. In a full run they build in the
# background at the lowest CPU and I/O priority while the steps that mostly wait on clients and
# servers run; the fuzz step then waits for that build.
fuzz_build_pid=""
start_fuzz_build() {
  [ -z "$(fuzz_unavailable)" ] || return 0
  echo "test.sh: building the fuzz targets in the background (log: $logdir/fuzz-build.log)"
  local low=(nice -n 19)
  command -v ionice >/dev/null && low+=(ionice -c 3)
  (cd fuzz && exec "${low[@]}" cargo +nightly fuzz build) >"$logdir/fuzz-build.log" 2>&1 </dev/null &
  fuzz_build_pid=$!
}
stop_fuzz_build() { [ -z "$fuzz_build_pid" ] || kill "$fuzz_build_pid" 2>/dev/null; }
trap stop_fuzz_build EXIT

step_fuzz() {
  local secs=${FUZZ_SECONDS:-10}
  banner "fuzz: each target in fuzz/ for $secs s (cargo +nightly fuzz run)"
  if ! command -v cargo >/dev/null; then record fuzz SKIPPED "cargo not found"; return; fi
  local why
  why=$(fuzz_unavailable)
  if [ -n "$why" ]; then
    # The property tests cover the same parsers on stable, so the step still tests something.
    local cases=${PROPTEST_CASES:-20000} log="$logdir/fuzz.log"
    PROPTEST_CASES=$cases cargo test -p berth --test integration parser_props:: 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then record fuzz ok "$why: ran the property tests (parser_props, $cases cases) instead"
    else record fuzz FAILED "$why; the property tests failed (parser_props, $cases cases)"; fi
    return
  fi
  local built=0
  if [ -n "$fuzz_build_pid" ]; then
    echo "waiting for the fuzz build started in the background"
    wait "$fuzz_build_pid" || built=$?
    fuzz_build_pid=""
    tail -3 "$logdir/fuzz-build.log"
  else
    (cd fuzz && cargo +nightly fuzz build) 2>&1 | tee "$logdir/fuzz-build.log"
    built=${PIPESTATUS[0]}
  fi
  if [ "$built" -ne 0 ]; then
    tail -40 "$logdir/fuzz-build.log"; record fuzz FAILED "cargo +nightly fuzz build"; return
  fi
  local targets failed=() t
  targets=$(cd fuzz && cargo +nightly fuzz list)
  for t in $targets; do
    echo "-- fuzz target $t ($secs s)"
    # A crash leaves its input in fuzz/artifacts/$t/: it becomes a regression test.
    if ! (cd fuzz && timeout $((secs + 300)) cargo +nightly fuzz run "$t" -- \
          -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048) >"$logdir/fuzz-$t.log" 2>&1; then
      failed+=("$t")
      tail -40 "$logdir/fuzz-$t.log"
    fi
  done
  local n
  n=$(echo "$targets" | wc -w)
  if [ ${#failed[@]} -eq 0 ]; then record fuzz ok "$n targets, $secs s each"
  else record fuzz FAILED "crashed: ${failed[*]} (inputs in fuzz/artifacts/, logs in $logdir)"; fi
}

step_conformance() {
  banner "conformance: target/debug/berth-conformance --berth-bin target/debug/berth"
  need_build conformance || return
  local bin=$tdir/debug/berth-conformance
  if [ ! -x "$bin" ]; then record conformance SKIPPED "$bin not built"; return; fi
  if [ ! -x "$BERTH_BIN" ]; then record conformance SKIPPED "$BERTH_BIN not built"; return; fi
  local log="$logdir/conformance.log"
  timeout 1800 "$bin" --berth-bin "$BERTH_BIN" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^conformance: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ "$rc" -eq 0 ] && [ -n "$line" ]; then record conformance ok "$line"
  elif [ "$rc" -eq 0 ]; then record conformance FAILED "exit 0 but no 'conformance: N passed, M failed' line"
  else record conformance FAILED "${line:-no summary line}; exit $rc"; fi
}

step_clients() {
  banner "clients: .venv/bin/pytest tests/clients -v (registry: ${REGISTRY_IMPL:-berth})"
  if [ "${REGISTRY_IMPL:-berth}" = berth ]; then need_build clients || return; fi
  if [ ! -x .venv/bin/pytest ]; then record clients SKIPPED ".venv/bin/pytest missing: run ./test.sh deps"; return; fi
  local missing=()
  for t in skopeo podman buildah umoci dockerd; do command -v "$t" >/dev/null || missing+=("$t"); done
  [ -x /bin/busybox ] || missing+=(busybox-static)
  if [ "${REGISTRY_IMPL:-berth}" = berth ] && [ ! -x "$BERTH_BIN" ]; then
    missing+=("$BERTH_BIN")
  fi
  if [ ${#missing[@]} -gt 0 ]; then record clients SKIPPED "missing: ${missing[*]}"; return; fi
  local log="$logdir/clients.log"
  # shellcheck disable=SC2086
  timeout 1500 .venv/bin/pytest tests/clients -v ${PYTEST_ARGS:-} 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^=+ .*(passed|failed|error|no tests ran).* in [0-9.]+s' "$log" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  case "$rc" in
    0) record clients ok "$line" ;;
    5) record clients FAILED "no tests collected" ;;
    124) record clients FAILED "timed out after 1500 s" ;;
    *) record clients FAILED "${line:-pytest exited $rc}" ;;
  esac
}

step_s3() {
  banner "s3: conformance + client scenarios with blobs on a 3-node Garage cluster"
  need_build s3 || return
  local gdir="$logdir/garage" log="$logdir/s3.log"
  if ! scripts/garage-cluster.sh start "$gdir" 3 >"$log" 2>&1; then
    cat "$log"; record s3 FAILED "the Garage cluster did not start (scripts/garage-cluster.sh)"; return
  fi
  local rc=0 conf="" cli=""
  (
    # shellcheck disable=SC1091
    source "$gdir/env"
    timeout 1200 "$tdir/debug/berth-conformance" --berth-bin "$BERTH_BIN" 2>&1 | tee "$logdir/s3-conformance.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
    timeout 1200 .venv/bin/pytest tests/clients -v -k "skopeo or podman or docker or oras" 2>&1 | tee "$logdir/s3-clients.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 2
  ) || rc=$?
  scripts/garage-cluster.sh stop "$gdir"
  # The full-size run of the test that `cargo test` runs at 128 MiB; it starts its own cluster.
  local big=""
  if [ "$rc" -eq 0 ]; then
    BERTH_BIG_TESTS=1 timeout 900 cargo test -q -p berth --test integration \
      s3::a_large_chunked_push_to_garage_keeps_server_memory_bounded -- --nocapture 2>&1 | tee "$logdir/s3-large.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=3
    big=$(grep -E '^[0-9]+ MiB pushed' "$logdir/s3-large.log" | tail -1)
  fi
  conf=$(grep -E '^conformance: [0-9]+ passed' "$logdir/s3-conformance.log" 2>/dev/null | tail -1)
  cli=$(grep -E '^=+ .*(passed|failed).* in [0-9.]+s' "$logdir/s3-clients.log" 2>/dev/null | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  if [ "$rc" -eq 0 ]; then record s3 ok "$conf; $cli; $big"
  elif [ "$rc" -eq 3 ]; then record s3 FAILED "$conf; $cli; the 1 GiB chunked push failed (s3-large.log)"
  else record s3 FAILED "${conf:-conformance did not finish}; ${cli:-clients did not run}"; fi
}

# start_replica DIR ETCD_DIR GARAGE_DIR N: `berth serve` on a free port, replica N (0, 1, ...) of
# a cluster whose metadata is under `replicas` in the etcd cluster of ETCD_DIR and whose blobs
# are under `replicas` in the bucket of GARAGE_DIR (scripts/etcd-cluster.sh and
# garage-cluster.sh), in the background with its log in DIR/log and its pid in DIR/pid. Replica
# N talks to etcd member N first and to Garage node N, so the replicas use different members.
# Returns once it listens, its address in DIR/addr. (Not called in $(...): berth must be a child
# of this shell, so that stop_replica can wait for its exit status.)
start_replica() {
  local dir=$1 edir=$2 gdir=$3 n=$4 addr="" i
  mkdir -p "$dir/data"
  (
    # shellcheck disable=SC1091
    source "$edir/env"; source "$gdir/env"
    hosts=${BERTH_METADATA_STORE#etcd://}
    hosts=${hosts%/*}
    IFS=, read -ra eps <<<"$hosts"
    rotated=("${eps[@]:n}" "${eps[@]:0:n}")
    BERTH_METADATA_STORE="etcd://$(IFS=,; echo "${rotated[*]}")/replicas"
    BERTH_BLOB_STORE="${BERTH_BLOB_STORE%/*}/replicas"
    BERTH_S3_ENDPOINT="http://127.0.0.1:$(cat "$gdir/node$n/s3_port")"
    export BERTH_METADATA_STORE BERTH_BLOB_STORE BERTH_S3_ENDPOINT RUST_LOG=${RUST_LOG:-info} NO_COLOR=1
    # The same flags as the client tests' own servers (tests/clients/clientlib.py).
    exec "$BERTH_BIN" serve --listen 127.0.0.1:0 --data-dir "$dir/data" --allow-insecure-import-from '127.0.0.1:*'
  ) >"$dir/log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  for i in $(seq 600); do
    addr=$(grep -o -m1 'listening addr=127\.0\.0\.1:[0-9]*' "$dir/log" | cut -d= -f2)
    if [ -n "$addr" ]; then echo "$addr" >"$dir/addr"; return 0; fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "berth replica in $dir did not start:" >&2; tail -30 "$dir/log" >&2
  return 1
}

# stop_replica DIR: SIGTERM, then the exit status (berth exits 0 on SIGTERM); SIGKILL after 30 s.
stop_replica() {
  local pid i
  pid=$(cat "$1/pid" 2>/dev/null) || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; wait "$pid" 2>/dev/null; return 137; fi
  wait "$pid"
}

step_etcd() {
  banner "etcd: 2 replicas on a 3-member etcd + 3-node Garage: conformance and client scenarios through each"
  need_build etcd || return
  local t0=$SECONDS log="$logdir/etcd.log" edir="$logdir/etcd-cluster" gdir="$logdir/etcd-garage"
  local rdir="$logdir/etcd-replicas"
  if ! scripts/etcd-cluster.sh start "$edir" 3 >"$log" 2>&1; then
    cat "$log"; record etcd FAILED "the etcd cluster did not start (scripts/etcd-cluster.sh)"; return
  fi
  if ! scripts/garage-cluster.sh start "$gdir" 3 >>"$log" 2>&1; then
    cat "$log"; scripts/etcd-cluster.sh stop "$edir"
    record etcd FAILED "the Garage cluster did not start (scripts/garage-cluster.sh)"; return
  fi
  local rc=0 a b what=""
  if ! start_replica "$rdir/a" "$edir" "$gdir" 0 || ! start_replica "$rdir/b" "$edir" "$gdir" 1; then
    rc=1 what="a replica did not start (logs in $rdir); "
  else
    a=$(cat "$rdir/a/addr") b=$(cat "$rdir/b/addr")
    echo "replica A at $a, replica B at $b (logs: $rdir/a/log, $rdir/b/log)"
    local r
    # The replay through each replica in a namespace of its own (it checks that what it is about
    # to push is absent). etcd takes requests up to 1.5 MiB, so berth refuses larger manifests
    # there with 413; the replay checks that refusal for its 3.9 MB manifest instead.
    for r in a b; do
      local url=http://$a
      [ "$r" = b ] && url=http://$b
      timeout 1200 "$tdir/debug/berth-conformance" --url "$url" --namespace "conformance-$r" \
        --max-manifest-bytes 1048576 2>&1 | tee "$logdir/etcd-conformance-$r.log"
      [ "${PIPESTATUS[0]}" -eq 0 ] || { rc=1; what+="conformance through $r failed; "; }
    done
    # The client scenarios through A, then through B, each in namespaces of its own; the
    # cross-replica scenarios (test_replicas.py) in the run through A. Servers the scenarios
    # start for themselves (auth, TLS) run on the same etcd and Garage under a prefix of their
    # own, in the run through A only: they do not involve the replicas.
    local sel_a="skopeo or podman or replicas" sel_b="(skopeo or podman) and not auth and not tls"
    for r in a b; do
      local url=http://$a other=http://$b sel=$sel_a
      [ "$r" = b ] && url=http://$b other="" sel=$sel_b
      (
        # shellcheck disable=SC1091
        source "$edir/env"; source "$gdir/env"
        export BERTH_METADATA_STORE="${BERTH_METADATA_STORE%/*}/own-$r" BERTH_BLOB_STORE="${BERTH_BLOB_STORE%/*}/own-$r"
        export BERTH_URL=$url BERTH_URL_LOG=$rdir/$r/log BERTH_URL_B=$other BERTH_URL_B_LOG=$rdir/b/log
        export BERTH_TEST_NS_SUFFIX=-$r
        timeout 1200 .venv/bin/pytest tests/clients -v -k "$sel" 2>&1 | tee "$logdir/etcd-clients-$r.log"
        exit "${PIPESTATUS[0]}"
      ) || { rc=1; what+="client scenarios through $r failed; "; }
    done
  fi
  local r code
  for r in a b; do
    stop_replica "$rdir/$r"
    code=$?
    [ "$code" -eq 0 ] || { rc=1; what+="replica $r exited with $code on SIGTERM (log: $rdir/$r/log); "; }
  done
  scripts/garage-cluster.sh stop "$gdir"
  scripts/etcd-cluster.sh stop "$edir"
  local detail="" conf cli
  for r in a b; do
    conf=$(grep -E '^conformance: [0-9]+ passed' "$logdir/etcd-conformance-$r.log" 2>/dev/null | tail -1)
    cli=$(grep -E '^=+ .*(passed|failed).* in [0-9.]+s' "$logdir/etcd-clients-$r.log" 2>/dev/null | tail -1 | sed -E 's/^=+ //; s/ =+$//')
    detail+="through ${r^^}: ${conf:-conformance did not finish}; clients: ${cli:-did not run}; "
  done
  detail+="$((SECONDS - t0)) s"
  if [ "$rc" -eq 0 ]; then record etcd ok "$detail"
  else record etcd FAILED "$what$detail"; fi
}

step_bench() {
  banner "bench: berth-bench --quick (smoke test; see BENCHMARKS.md)"
  need_build bench || return
  local bin=$tdir/debug/berth-bench
  if [ ! -x "$bin" ]; then record bench SKIPPED "$bin not built"; return; fi
  if [ ! -x /usr/bin/docker-registry ]; then record bench SKIPPED "docker-registry not installed"; return; fi
  local log="$logdir/bench.log"
  timeout 900 "$bin" --quick --berth-bin "$BERTH_BIN" --out "$logdir/bench" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then record bench ok "quick run, results in $logdir/bench"
  else record bench FAILED "berth-bench --quick exited $rc"; fi
}

step_compose() {
  banner "compose: docker-compose -f docker-compose.yml config -q"
  if ! command -v docker-compose >/dev/null; then record compose SKIPPED "docker-compose not installed"; return; fi
  # The file requires the first admin's password; any value validates it.
  if BERTH_ADMIN_PASSWORD=validation-only docker-compose -f docker-compose.yml config -q; then record compose ok
  else record compose FAILED "docker-compose config rejected docker-compose.yml"; fi
}

# Free disk, in GiB, where the build and the test data go: a full run from a clean checkout
# needs about 8 GiB (target/ 2.5, fuzz/target 2.5, cluster and client data in between).
free_gib() { df -P -BG "$tdir" "${TMPDIR:-/tmp}" 2>/dev/null | awk 'NR > 1 { sub("G", "", $4); print $4 }' | sort -n | head -1; }
mkdir -p "$tdir"
echo "test.sh: $(free_gib) GiB free for target/ and ${TMPDIR:-/tmp}"
[ "$(free_gib)" -ge 8 ] 2>/dev/null || echo "test.sh: warning: a full run needs about 8 GiB free" >&2
for i in "${!steps[@]}"; do
  s=${steps[$i]} later=" ${steps[*]:i+2} "
  step_start=$SECONDS
  "step_$s"
  # Worth it only when other steps run between the build and the fuzz step.
  if [ "$s" = build ] && [[ "$later" == *" fuzz "* ]]; then start_fuzz_build; fi
  echo "(after $s: $(free_gib) GiB free)"
done

echo
echo "==== summary ===="
printf '%s\n' "${summary[@]}"
echo "logs: $logdir"
echo "test.sh: $n_ok passed, $n_failed failed, $n_skipped skipped in $((SECONDS / 60)) min"
[ "$n_failed" -eq 0 ] && [ "$n_skipped" -eq 0 ]
