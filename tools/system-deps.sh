#!/usr/bin/env bash
# Install the Debian/Ubuntu packages advgui needs (Qt's runtime libraries, venv), if missing.
# Uses sudo when not root. Set ADVGUI_SKIP_SYSTEM_DEPS=1 to skip (e.g. non-Debian systems).
set -euo pipefail
[ "${ADVGUI_SKIP_SYSTEM_DEPS:-0}" = 1 ] && exit 0
command -v dpkg-query >/dev/null 2>&1 || { echo "system-deps: not a Debian/Ubuntu system; skipping" >&2; exit 0; }
PKGS=(
  python3-venv make
  # Qt offscreen and xcb platforms
  libgl1 libegl1 libxkbcommon0 libglib2.0-0 libfontconfig1 libdbus-1-3
  # Qt on a real X display
  libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-xkb1
  # packaging: PyInstaller needs objdump; the spec strips with strip (tests too)
  binutils
  # tests: pdftotext reads back the lab report's PDF
  poppler-utils
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "system-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
