#!/usr/bin/env bash
# Screenshot the real app window under Xvfb: tools/screenshot.sh OUT.png [SECONDS]
# Needs Debian's xvfb and imagemagick (import). Uses ADVGUI_DATA / the cache for MNIST.
set -euo pipefail
out=${1:-resources/screenshot.png}
wait_s=${2:-6}
export DISPLAY=:97
Xvfb $DISPLAY -screen 0 1280x860x24 >/dev/null 2>&1 &
xvfb=$!
trap 'kill $app $xvfb 2>/dev/null || true' EXIT
sleep 1
unset QT_QPA_PLATFORM
.venv/bin/advgui &
app=$!
sleep "$wait_s"
import -window root "$out"
echo "wrote $out"
