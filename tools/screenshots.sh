#!/usr/bin/env bash
# Retake the README's screenshots in a real X window: tools/screenshots.sh [OUT_DIR] [WxH]
# Needs Debian's xvfb (tools/system-deps.sh installs the rest). Uses ADVGUI_DATA for MNIST.
# With QT_SCALE_FACTOR=2 and 1920x1080 it shows the app as a 2x-scaled full-HD screen does.
set -euo pipefail
out=${1:-resources}
size=${2:-1280x800}
export DISPLAY=:${DISPLAY_NUMBER:-96}
Xvfb "$DISPLAY" -screen 0 "${size}x24" >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null || true' EXIT
sleep 1
unset QT_QPA_PLATFORM
if [ -n "${QT_SCALE_FACTOR:-}" ]; then  # the window in logical pixels
  w=${size%x*}; h=${size#*x}
  size="$((w / QT_SCALE_FACTOR))x$((h / QT_SCALE_FACTOR))"
fi
.venv/bin/python tools/screenshots.py --out "$out" --size "$size"
