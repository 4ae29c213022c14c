#!/usr/bin/env bash
# Install the .deb into a clean Debian root and run the smoke test there (as root).
#   packaging/linux/test_deb_in_chroot.sh [--create] ROOT DEB
# --create first makes ROOT with `debootstrap --variant=minbase bookworm ROOT MIRROR`
# (MIRROR: $DEBIAN_MIRROR, default http://deb.debian.org/debian). apt inside the root resolves
# the package's Depends, so a missing system library shows up here, not on a lab machine.
set -euo pipefail
CREATE=0
[ "${1:-}" = --create ] && { CREATE=1; shift; }
ROOTFS="${1:?usage: test_deb_in_chroot.sh [--create] ROOT DEB}"
DEB="$(readlink -f "${2:?usage: test_deb_in_chroot.sh [--create] ROOT DEB}")"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "test_deb_in_chroot.sh: needs root (chroot, mount)" >&2; exit 2; }
if [ "$CREATE" = 1 ]; then
  debootstrap --variant=minbase bookworm "$ROOTFS" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi
[ -x "$ROOTFS/usr/bin/apt-get" ] || { echo "$ROOTFS is not a Debian root" >&2; exit 2; }

MOUNTS=()
cleanup() {
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for m in proc sys dev dev/pts; do
  mountpoint -q "$ROOTFS/$m" && continue
  case "$m" in
    proc) mount -t proc proc "$ROOTFS/proc" ;;
    *) mount --bind "/$m" "$ROOTFS/$m" ;;
  esac
  MOUNTS+=("$ROOTFS/$m")
done
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
mkdir -p "$ROOTFS/tmp/advgui-test"
cp "$DEB" "$ROOTFS/tmp/advgui-test/advgui.deb"
cp "$HERE/smoke_test.sh" "$ROOTFS/tmp/advgui-test/smoke_test.sh"

echo "== installing $(basename "$DEB") with apt (Depends resolved from the Debian archive)"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  sh -c 'apt-get update -qq && apt-get install -y -q --no-install-recommends /tmp/advgui-test/advgui.deb 2>&1 | grep -E "^(Setting up|The following NEW|Need to get|[0-9]+ upgraded)" '
echo "== installed files"
chroot "$ROOTFS" sh -c 'ls -la /usr/bin/advgui /usr/share/applications/advgui.desktop /usr/share/icons/hicolor/*/apps/advgui.png; du -sh /opt/advgui; dpkg -s advgui | grep -E "^(Status|Version|Installed-Size)"'
echo "== smoke test inside the clean root (advgui from PATH, no display, no network needed)"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  bash /tmp/advgui-test/smoke_test.sh advgui
