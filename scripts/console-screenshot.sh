#!/usr/bin/env bash
# Regenerates the README's screenshot of the console's tag-history page
# (src/http/console/screenshot-history.png): the browser test that opens a tag's history
# (tests/clients/test_console.py) saves its view there too. Needs what ./test.sh deps installs
# (skopeo, chromium, chromium-driver, the .venv with selenium) and a built berth (BERTH_BIN, else
# target/debug/berth, built here if missing).
#
# Usage: scripts/console-screenshot.sh [OUTPUT.png]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(realpath -m "${1:-$repo/src/http/console/screenshot-history.png}")
cd "$repo"
export BERTH_BIN=${BERTH_BIN:-$repo/target/debug/berth}
[ -x "$BERTH_BIN" ] || cargo build -q --bin berth
[ -x .venv/bin/pytest ] || { echo "console-screenshot: .venv missing: run ./test.sh deps" >&2; exit 1; }
BERTH_CONSOLE_SCREENSHOT="$out" .venv/bin/pytest tests/clients/test_console.py -q -p no:cacheprovider \
  -k test_stream_tag_history_and_rollback
echo "console-screenshot: wrote $out"
