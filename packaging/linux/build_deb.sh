#!/usr/bin/env bash
# Build dist/advgui_VERSION_amd64.deb from the PyInstaller onedir folder.
#   /opt/advgui/            the frozen app
#   /usr/bin/advgui         symlink to /opt/advgui/advgui (the bootloader resolves it)
#   /usr/share/applications/advgui.desktop, hicolor icons, /usr/share/doc/advgui/copyright
# Depends: the Qt system libraries (as tools/system-deps.sh installs them for a checkout), every
# package that owns a system library the bundled binaries link to (found with ldd + dpkg -S,
# in the spirit of dpkg-shlibdeps) and libc6 >= the newest GLIBC symbol version they use.
# Usage: build_deb.sh BUNDLE_DIR OUT_DIR     (ADVGUI_DEB_COMPRESS=zstd|xz|gzip|none)
# The version is advgui's own (packaging/version.sh); the desktop entry and icons are the
# package data in advgui/resources, the same files the app loads.
# zstd by default: several times faster than xz on a 1.4 GB tree, and every dpkg that can run
# this bundle (it needs glibc >= 2.36: Debian 12, Ubuntu 22.10 and later) reads it.
set -euo pipefail
BUNDLE="$(cd "${1:?bundle folder}" && pwd)"
OUT="$(mkdir -p "${2:?output folder}" && cd "$2" && pwd)"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION="$(bash "$ROOT/packaging/version.sh")"
RES="$ROOT/advgui/resources"
ARCH="$(dpkg --print-architecture)"
STAGE="$ROOT/build/deb/advgui_${VERSION}_${ARCH}"
DEB="$OUT/advgui_${VERSION}_${ARCH}.deb"

# Qt's xcb and offscreen platforms (https://doc.qt.io/qt-6/linux-requirements.html).
QT_DEPS=(
  libgl1 libegl1 libfontconfig1 libfreetype6 libglib2.0-0 libdbus-1-3 libx11-6 libx11-xcb1
  libxcb1 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
  libxcb-shape0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xinerama0 libxcb-xkb1
  libxcb-render0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0
)

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" \
  "$STAGE/usr/share/doc/advgui" "$STAGE/usr/share/icons/hicolor/256x256/apps" \
  "$STAGE/usr/share/icons/hicolor/64x64/apps"
cp -a "$BUNDLE" "$STAGE/opt/advgui"
ln -s /opt/advgui/advgui "$STAGE/usr/bin/advgui"
install -m 644 "$RES/advgui.desktop" "$STAGE/usr/share/applications/advgui.desktop"
install -m 644 "$RES/icons/advgui.png" "$STAGE/usr/share/icons/hicolor/256x256/apps/advgui.png"
install -m 644 "$RES/icons/advgui-64.png" "$STAGE/usr/share/icons/hicolor/64x64/apps/advgui.png"
cat >"$STAGE/usr/share/doc/advgui/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: advgui
Comment: /opt/advgui bundles Python, PySide6 (Qt 6, LGPLv3), TensorFlow and Keras (Apache-2.0),
 NumPy (BSD-3-Clause), pyqtgraph (MIT), Pillow (MIT-CMU) and their dependencies; their license
 files are inside /opt/advgui/_internal/*.dist-info.

Files: *
Copyright: advgui contributors
License: MIT
EOF
# The full text of the project's LICENSE, in the copyright format's continuation lines.
sed -e 's/^$/./' -e 's/^/ /' "$ROOT/LICENSE" >>"$STAGE/usr/share/doc/advgui/copyright"
# Files owned by root, readable by all; the executables keep their x bit.
chmod -R u=rwX,go=rX "$STAGE/opt/advgui"

# --- system libraries the bundle links to, mapped to the packages that own them
mapfile -t ELVES < <(python3 - "$STAGE/opt/advgui" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        path = os.path.join(root, name)
        if not os.path.islink(path) and (".so" in name or os.access(path, os.X_OK)):
            with open(path, "rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    print(path)
PY
)
# Resolve the bundle's own libraries the way its RPATHs and the bootloader do.
BUNDLE_PATH="$(printf '%s\n' "${ELVES[@]}" | xargs -n1 dirname | sort -u | paste -sd:)"
declare -A SYSLIBS=() MISSING=() PKGS=()
for f in "${ELVES[@]}"; do
  while read -r lib path; do
    case "$path" in
      "not found") MISSING["$lib"]=1 ;;
      "$STAGE"/*|"") ;;
      *) SYSLIBS["$path"]=1 ;;
    esac
  done < <(LD_LIBRARY_PATH="$BUNDLE_PATH" ldd "$f" 2>/dev/null | awk '/=>/ {print $1, ($3 == "not" ? "not found" : $3)}')
done
# One dpkg -S for all of them (each call reads the whole database); usrmerge means a library
# found as /lib/x/libfoo may be registered as /usr/lib/x/libfoo, or the other way round.
QUERY=()
for path in "${!SYSLIBS[@]}"; do
  real="$(readlink -f "$path")"
  QUERY+=("$path" "$real" "/usr${real#/usr}" "${real#/usr}")
done
while IFS=: read -r owner _; do
  PKGS["$owner"]=1
done < <(dpkg -S $(printf '%s\n' "${QUERY[@]}" | sort -u) 2>/dev/null | grep -v '^diversion' || true)
# The newest GLIBC symbol version any bundled binary asks for sets libc6's minimum.
GLIBC="$(printf '%s\0' "${ELVES[@]}" | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9][0-9.]*' \
  | sed 's/GLIBC_//' | sort -uV | tail -1)"
GLIBC="${GLIBC:-2.17}"
unset 'PKGS[libc6]'
DEPENDS="libc6 (>= $GLIBC)"
for p in $(printf '%s\n' "${QT_DEPS[@]}" "${!PKGS[@]}" | sort -u); do DEPENDS="$DEPENDS, $p"; done
if [ ${#MISSING[@]} -gt 0 ]; then
  # Optional plugins (Wayland, EGLFS, ...) link to libraries this build machine lacks; Qt
  # skips a plugin that cannot load, so these become Recommends/nothing, not Depends.
  echo "build_deb: not on this machine (optional plugins only): ${!MISSING[*]}" >&2
fi

# Wayland: only for the optional Qt Wayland plugin (xcb works through XWayland).
RECOMMENDS="fonts-dejavu-core"
for p in libwayland-client0 libwayland-cursor0 libwayland-egl1; do
  [ -n "${PKGS[$p]:-}" ] || RECOMMENDS="$RECOMMENDS, $p"
done
SIZE_KB="$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)"
cat >"$STAGE/DEBIAN/control" <<EOF
Package: advgui
Version: $VERSION
Architecture: $ARCH
Maintainer: advgui developers <advgui@localhost>
Installed-Size: $SIZE_KB
Depends: $DEPENDS
Recommends: $RECOMMENDS
Section: science
Priority: optional
Homepage: https://github.com/advgui/advgui
Description: desktop workbench for adversarial machine learning on MNIST
 Train a network on MNIST and watch it learn, fool it with adversarial images
 that look harmless to a person, then try defenses and compare which ones hold.
 Self-contained: Python, Qt (PySide6) and TensorFlow are bundled in /opt/advgui.
 Run "advgui selftest" to check an installation without a display.
EOF
(cd "$STAGE" && find opt usr -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)

dpkg-deb --root-owner-group -Z"${ADVGUI_DEB_COMPRESS:-zstd}" --build "$STAGE" "$DEB" >&2
echo "build_deb: $DEB" >&2
dpkg-deb --field "$DEB" Package Version Installed-Size Depends >&2
ls -la "$DEB" >&2
