#!/bin/bash
# setup.sh: host side of the Soft-RoCE VM harness, step 1.
# Checks the host packages, then fetches Debian's own kernel (which ships rdma_rxe as a
# module) with `apt-get download`, unpacks it with dpkg -x into $RXE_DIR/kernel and
# extracts an uncompressed ELF vmlinux for qemu's PVH direct boot (3-4 s faster per boot
# under TCG than the xz bzImage). Idempotent: a cached kernel is kept.
# RXE_DIR defaults to <repo>/.rxe (gitignored).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RXE_DIR=${RXE_DIR:-$(cd "$HERE/../.." && pwd)/.rxe}
mkdir -p "$RXE_DIR/debs"

PKGS=(qemu-system-x86 rdma-core ibverbs-utils libibverbs-dev ibverbs-providers perftest
      busybox-static cpio kmod xz-utils bc)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d "$RXE_DIR/kernel/boot" ]; then
  IMG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$IMG" ] || { echo "setup: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
  echo "setup: kernel package $IMG" >&2
  rm -f "$RXE_DIR"/debs/*.deb
  (cd "$RXE_DIR/debs" && apt-get download "$IMG")
  rm -rf "$RXE_DIR/kernel.tmp"
  dpkg -x "$RXE_DIR"/debs/"${IMG}"_*.deb "$RXE_DIR/kernel.tmp"
  mv "$RXE_DIR/kernel.tmp" "$RXE_DIR/kernel"
fi
KVER=$(ls "$RXE_DIR/kernel/lib/modules" | head -1)
echo "setup: kernel $KVER in $RXE_DIR/kernel" >&2

if [ ! -f "$RXE_DIR/kernel/boot/vmlinux" ]; then
  python3 - "$RXE_DIR/kernel/boot/vmlinuz-$KVER" "$RXE_DIR/kernel/boot/vmlinux.tmp" <<'PY'
import lzma, sys
d = open(sys.argv[1], 'rb').read()
i = d.find(b'\xfd7zXZ\x00')
if i < 0:
    sys.exit("no xz stream in " + sys.argv[1])
open(sys.argv[2], 'wb').write(lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[i:]))
PY
  mv "$RXE_DIR/kernel/boot/vmlinux.tmp" "$RXE_DIR/kernel/boot/vmlinux"
fi
echo "setup: ok" >&2
