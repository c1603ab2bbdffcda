#!/bin/bash
# vmrun.sh DIR: boot the Soft-RoCE VM with DIR appended as /payload (a second cpio; the
# kernel unpacks concatenated archives), run DIR/run.sh there, and exit with its exit code.
# Shared libraries that DIR's executables need and the base image lacks are added.
# Env: TIMEOUT (s, default 600), LOG (default $RXE_DIR/vmrun.log), MEM, SMP, NETDEV (eth0|dummy0).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RXE_DIR=${RXE_DIR:-$(cd "$HERE/../.." && pwd)/.rxe}
export RXE_DIR
SRC=$(cd "$1" && pwd)
[ -f "$SRC/run.sh" ] || { echo "vmrun: $SRC/run.sh missing" >&2; exit 2; }
[ -f "$RXE_DIR/initramfs.cpio.gz" ] || { echo "vmrun: run mkinitramfs.sh first" >&2; exit 2; }
ST=$(mktemp -d "$RXE_DIR/stage.XXXXXX")
trap 'rm -rf "$ST"' EXIT
mkdir -p "$ST/lib/x86_64-linux-gnu"
cp -a "$SRC" "$ST/payload"
for f in "$ST"/payload/*; do
  [ -x "$f" ] && [ -f "$f" ] || continue
  { ldd "$f" 2>/dev/null || true; } | awk '/=>/ {print $3}' | while read -r l; do
    [ -e "$RXE_DIR/initramfs/lib/x86_64-linux-gnu/$(basename "$l")" ] || cp -Ln "$l" "$ST/lib/x86_64-linux-gnu/"
  done
done
( cd "$ST" && find . -path ./initrd.gz -prune -o -print0 | cpio --null -o -H newc --quiet ) | gzip -1 > "$ST/payload.cpio.gz"
cat "$RXE_DIR/initramfs.cpio.gz" "$ST/payload.cpio.gz" > "$ST/initrd.gz"
NIC=""; [ "${NETDEV:-eth0}" = eth0 ] || NIC="-nic none"
LOG=${LOG:-$RXE_DIR/vmrun.log}
set +e
INITRD="$ST/initrd.gz" NIC="$NIC" timeout "${TIMEOUT:-600}" "$HERE/run-vm.sh" "rxenetdev=${NETDEV:-eth0}" </dev/null 2>&1 \
  | sed -u 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\x1bc//g; s/\r//g' | tee "$LOG"
QRC=${PIPESTATUS[0]}
set -e
RC=$(grep -a -o 'RXE-RESULT rc=[0-9]*' "$LOG" | tail -1 | cut -d= -f2)
[ -n "$RC" ] || { echo "vmrun: no result (qemu rc=$QRC; 124 = timeout)" >&2; exit 125; }
exit "$RC"
