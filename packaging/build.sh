#!/usr/bin/env bash
# Build the lab-machine installers from a clean checkout:
#   dist/advgui/                                  PyInstaller onedir folder (the frozen app)
#   dist/advgui-VERSION-linux-x86_64.tar.gz       that folder as a tarball
#   dist/advgui_VERSION_amd64.deb                 installs to /opt/advgui, advgui on PATH
# then runs packaging/smoke_test.sh on the frozen app.
#
# Usage: packaging/build.sh [--mnist DIR] [--venv DIR] [--no-deb] [--no-tar] [--no-smoke]
#   --mnist DIR   bundle the four MNIST IDX files (raw or .gz) from DIR, so the app works
#                 offline; default: $ADVGUI_BUNDLE_MNIST, else no dataset is bundled
#   --venv DIR    build virtualenv (default build/venv; created and filled if missing)
#   --no-deb, --no-tar, --no-smoke   skip that step
# Environment: PYTHON (interpreter for the build venv, default python3; it must have a shared
# libpython, as PyInstaller needs), ADVGUI_DEB_COMPRESS (dpkg-deb -Z value, default zstd).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/build/venv"
MNIST="${ADVGUI_BUNDLE_MNIST:-}"
DO_DEB=1
DO_TAR=1
DO_SMOKE=1
while [ $# -gt 0 ]; do
  case "$1" in
    --mnist) MNIST="${2:?--mnist needs a folder}"; shift 2 ;;
    --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
    --no-deb) DO_DEB=0; shift ;;
    --no-tar) DO_TAR=0; shift ;;
    --no-smoke) DO_SMOKE=0; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

log() { printf '\n== %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }
VERSION="$(bash packaging/version.sh)"
mkdir -p build dist
for tool in objdump strip ldd; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build.sh: $tool not found (apt-get install binutils)" >&2; exit 2; }
done
if [ "$DO_DEB" = 1 ] && ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "build.sh: dpkg-deb not found: build the .deb on Debian/Ubuntu, or pass --no-deb" >&2; exit 2
fi

# ---------------------------------------------------------------- build venv
log "build virtualenv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
STAMP="$VENV/.advgui-build-deps"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  # The spec freezes the checkout itself (pathex); the venv supplies the dependencies.
  "$VENV/bin/python" -m pip install -q '.[package]'
  "$VENV/bin/python" -m pip uninstall -q -y advgui
  echo "$WANT" >"$STAMP"
fi

# ---------------------------------------------------------------- MNIST to bundle
if [ -n "$MNIST" ]; then
  MNIST="$(cd "$MNIST" && pwd)"
  log "checking the MNIST files in $MNIST"
  # Refuse to bundle anything that is not the exact MNIST (same checks as the app).
  "$VENV/bin/python" -c 'import sys; from advgui.core.data import read_folder; read_folder(sys.argv[1])' "$MNIST"
fi

# ---------------------------------------------------------------- PyInstaller
log "PyInstaller (onedir) -> dist/advgui"
rm -rf dist/advgui
ADVGUI_BUNDLE_MNIST="$MNIST" "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/advgui.spec
du -sh dist/advgui >&2
du -sb dist/advgui | cut -f1 >build/bundle-size-bytes

# ---------------------------------------------------------------- tarball
if [ "$DO_TAR" = 1 ]; then
  TARBALL="dist/advgui-$VERSION-linux-x86_64.tar.gz"
  log "tarball $TARBALL"
  GZ=gzip
  command -v pigz >/dev/null 2>&1 && GZ=pigz
  tar -C dist -cf - advgui | "$GZ" -6 >"$TARBALL.part"
  mv "$TARBALL.part" "$TARBALL"
  ls -la "$TARBALL" >&2
fi

# ---------------------------------------------------------------- .deb
if [ "$DO_DEB" = 1 ]; then
  log ".deb"
  bash packaging/linux/build_deb.sh dist/advgui dist
fi

# ---------------------------------------------------------------- smoke test
if [ "$DO_SMOKE" = 1 ]; then
  log "smoke test of the frozen app"
  SMOKE_ARGS=()
  [ -n "$MNIST" ] || SMOKE_ARGS+=(--no-bundled-mnist)
  bash packaging/smoke_test.sh "${SMOKE_ARGS[@]}" dist/advgui/advgui
fi
log "done: $(ls dist | tr '\n' ' ')"
