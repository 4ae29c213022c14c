#!/usr/bin/env bash
# Smoke test of a frozen (or installed) advgui, run after every build and inside a clean
# Debian root after installing the .deb. Needs no display and no network.
#   1. `advgui --version`
#   2. `advgui selftest`: loads MNIST from the bundle, trains a tiny model for a few batches,
#      runs FGSM and a compiled 10-step PGD, exports a PNG, reads it back and re-classifies
#      it; exits 0
#   3. a user error exits 2 with one line
#   4. the window opens (QT_QPA_PLATFORM=offscreen, ADVGUI_QUIT_AFTER_SHOW=1) and closes, exit 0
#   5. the xcb platform plugin finds every system library it needs (a real display would work)
# Usage: smoke_test.sh [--no-bundled-mnist] [--data DIR] [EXECUTABLE]
#   EXECUTABLE defaults to `advgui` on PATH; --data DIR passes --data to the selftest (needed
#   with --no-bundled-mnist, for a bundle built without MNIST).
set -euo pipefail
BUNDLED=1
DATA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-bundled-mnist) BUNDLED=0; shift ;;
    --data) DATA=(--data "${2:?--data needs a folder}"); shift 2 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) echo "smoke_test.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
EXE="${1:-advgui}"
command -v "$EXE" >/dev/null 2>&1 || { echo "smoke_test.sh: $EXE not found" >&2; exit 2; }
if [ "$BUNDLED" = 0 ] && [ ${#DATA[@]} -eq 0 ]; then
  DATA=(--data "${ADVGUI_DATA:?--no-bundled-mnist needs --data DIR or ADVGUI_DATA}")
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/advgui-smoke.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# A fresh user folder and no dataset hints: the selftest must find MNIST in the bundle itself.
export ADVGUI_HOME="$WORK/home"
unset ADVGUI_DATA DISPLAY WAYLAND_DISPLAY
export QT_QPA_PLATFORM=offscreen
STEP=0
step() { STEP=$((STEP + 1)); printf '\n[smoke %d] %s\n' "$STEP" "$*"; }
fail() { printf '[smoke] FAILED: %s\n' "$*" >&2; exit 1; }
T0=$(date +%s)

step "$EXE --version"
"$EXE" --version | tee "$WORK/version.txt"
grep -q '^advgui [0-9]' "$WORK/version.txt" || fail "--version printed no version"

step "$EXE ${DATA[*]:+${DATA[*]} }selftest --out $WORK/out"
# Stream the output: TensorFlow's start-up chatter goes to stderr, the report to stdout.
"$EXE" "${DATA[@]}" selftest --out "$WORK/out" 2> >(grep -v -E '^(WARNING: All log messages|I0000|E0000|W0000)' >&2) \
  | tee "$WORK/selftest.txt" || fail "selftest exited $?"
grep -q '^selftest: PASSED' "$WORK/selftest.txt" || fail "selftest did not report PASSED"
[ -s "$WORK/out/selftest.json" ] || fail "selftest wrote no selftest.json"
ls "$WORK"/out/*.png >/dev/null 2>&1 || fail "selftest exported no PNG"
if [ "$BUNDLED" = 1 ]; then
  grep -q '^  data: .*bundle' "$WORK/selftest.txt" || fail "MNIST did not come from the bundle"
fi

step "a user error exits 2 with one line"
set +e
"$EXE" --data "$WORK/no-such-folder" selftest --out "$WORK/bad" >"$WORK/err.out" 2>"$WORK/err.txt"
rc=$?
set -e
grep -v -E '^(WARNING: All log messages|I0000|E0000|W0000)' "$WORK/err.txt" >"$WORK/err.clean" || true
cat "$WORK/err.clean"
[ "$rc" = 2 ] || fail "expected exit status 2, got $rc"
[ "$(wc -l <"$WORK/err.clean")" = 1 ] || fail "expected one line of error"

step "the window opens offscreen and closes (ADVGUI_QUIT_AFTER_SHOW=1)"
ADVGUI_QUIT_AFTER_SHOW=1 ADVGUI_STARTUP_TIMING=1 timeout 120 "$EXE" >"$WORK/gui.txt" 2>&1 \
  || { cat "$WORK/gui.txt"; fail "the window did not open and close cleanly"; }
grep 'startup:' "$WORK/gui.txt" || { cat "$WORK/gui.txt"; fail "the window never showed"; }
if grep -E 'Traceback|Could not load the Qt platform plugin' "$WORK/gui.txt"; then
  fail "errors while the window was open"
fi

REAL="$(readlink -f "$(command -v "$EXE")")"
if [ "$(uname)" = Linux ]; then
  step "system libraries of the xcb platform plugin (for a real display)"
  XCB="$(find -L "$(dirname "$REAL")" -name libqxcb.so -print -quit)"
  [ -n "$XCB" ] || fail "no xcb platform plugin in the bundle"
  if ldd "$XCB" | grep 'not found'; then fail "the xcb plugin lacks system libraries"; fi
  echo "$XCB: all $(ldd "$XCB" | grep -c '=>') libraries found"
fi

printf '\nSMOKE TEST PASSED (%s, %d s)\n' "$REAL" "$(($(date +%s) - T0))"
