#!/usr/bin/env bash
# macOS recipe: dist/advgui.app and dist/advgui-VERSION-macos-ARCH.dmg.
# NOT RUN HERE (no Mac was available); written from the PyInstaller ("macOS App Bundles",
# "Code signing") and Apple (codesign, notarytool, hdiutil) documentation, to mirror
# packaging/build.sh: same spec, same optional MNIST bundle, same smoke test.
#
# Usage, on a Mac with Python 3.10+ (python.org or Homebrew; arm64 or x86_64):
#   packaging/macos/build.sh [--mnist DIR]
# Optional signing and notarisation (needed to open the app without Gatekeeper warnings):
#   MACOS_SIGN_IDENTITY="Developer ID Application: ..."  sign the app and the dmg
#   MACOS_NOTARY_PROFILE=profile   notarise with `xcrun notarytool` (a keychain profile made by
#                                  `xcrun notarytool store-credentials profile ...`) and staple
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
[ "$(uname)" = Darwin ] || { echo "macos/build.sh: run this on macOS" >&2; exit 2; }
MNIST="${ADVGUI_BUNDLE_MNIST:-}"
[ "${1:-}" = --mnist ] && MNIST="${2:?--mnist needs a folder}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/build/venv-macos"
VERSION="$(bash packaging/version.sh)"
ARCH="$(uname -m)"
DMG="dist/advgui-$VERSION-macos-$ARCH.dmg"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q '.[package]'
  "$VENV/bin/python" -m pip uninstall -q -y advgui  # the spec freezes the checkout itself
fi
if [ -n "$MNIST" ]; then
  "$VENV/bin/python" -c 'import sys; from advgui.core.data import read_folder; read_folder(sys.argv[1])' "$MNIST"
fi

# The spec's BUNDLE step makes dist/advgui.app (Contents/MacOS/advgui opens the window,
# Contents/MacOS/advgui-cli is the console program).
rm -rf dist/advgui dist/advgui.app
ADVGUI_BUNDLE_MNIST="$MNIST" "$VENV/bin/pyinstaller" --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller-macos packaging/advgui.spec
du -sh dist/advgui.app

if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  # Hardened runtime is required for notarisation; PyInstaller already signed each binary
  # ad hoc, --deep re-signs them all with the identity.
  codesign --force --deep --timestamp --options runtime --sign "$MACOS_SIGN_IDENTITY" dist/advgui.app
  codesign --verify --deep --strict --verbose=2 dist/advgui.app
fi

# Smoke test of the frozen app before packing it (the xcb step is skipped off Linux).
SMOKE_ARGS=()
[ -n "$MNIST" ] || SMOKE_ARGS+=(--no-bundled-mnist)
bash packaging/smoke_test.sh "${SMOKE_ARGS[@]}" dist/advgui.app/Contents/MacOS/advgui-cli

# A compressed disk image with the app and a link to /Applications (drag to install).
STAGE="build/dmg"
rm -rf "$STAGE" "$DMG"
mkdir -p "$STAGE"
cp -R dist/advgui.app "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "advgui $VERSION" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
if [ -n "${MACOS_SIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$MACOS_SIGN_IDENTITY" "$DMG"
fi
if [ -n "${MACOS_NOTARY_PROFILE:-}" ]; then
  xcrun notarytool submit "$DMG" --keychain-profile "$MACOS_NOTARY_PROFILE" --wait
  xcrun stapler staple "$DMG"
fi
ls -la "$DMG"
