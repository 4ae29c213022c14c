#!/usr/bin/env bash
# Print advgui's version. It is written in one place, advgui/__init__.py (__version__); the wheel
# (pyproject.toml: dynamic version), `advgui --version`, the About box and selftest read it there,
# and the installers (build.sh, linux/build_deb.sh, macos/build.sh) through this script.
set -euo pipefail
INIT="$(cd "$(dirname "$0")/.." && pwd)/advgui/__init__.py"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$INIT")"
[ -n "$VERSION" ] || { echo "version.sh: no __version__ = \"...\" line in $INIT" >&2; exit 1; }
echo "$VERSION"
