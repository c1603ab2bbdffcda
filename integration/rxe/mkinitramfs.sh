#!/bin/bash
# mkinitramfs.sh: host side of the Soft-RoCE VM harness, step 2.
# Builds $RXE_DIR/initramfs.cpio.gz: busybox-static, the kernel modules Soft-RoCE (rdma_rxe)
# and FUSE need with their dependencies, the host's rdma-core and perftest tools with their
# shared libraries, the dlopen'ed rxe verbs provider plus its driver file (ldd does not list
# it; without it ibv_get_device_list finds nothing), and this folder's init as PID 1.
# The VM runs the host's glibc and libibverbs, so host-built binaries run in it unchanged.
# Test payloads are not baked in: vmrun.sh appends them as a second cpio.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RXE_DIR=${RXE_DIR:-$(cd "$HERE/../.." && pwd)/.rxe}
[ -d "$RXE_DIR/kernel/lib/modules" ] || { echo "mkinitramfs: run setup.sh first" >&2; exit 2; }
KVER=$(ls "$RXE_DIR/kernel/lib/modules" | head -1)
KSRC=$RXE_DIR/kernel/lib/modules/$KVER
ROOT=$RXE_DIR/initramfs
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,sbin,etc,proc,sys,dev,tmp,run,root,mnt,usr/bin,usr/sbin,lib/modules/$KVER,lib/x86_64-linux-gnu}
ln -s lib "$ROOT/lib64"

cp /bin/busybox "$ROOT/bin/busybox"
for a in $("$ROOT/bin/busybox" --list); do
  [ -e "$ROOT/bin/$a" ] || ln -s busybox "$ROOT/bin/$a"
done

# Modules in dependency order (modinfo -F depends, recursively); init insmods load-order.
declare -A seen
addmod() {
  local m=$1 f rel
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  f=$(find "$KSRC" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" \) | head -1)
  [ -n "$f" ] || { echo "mkinitramfs: module $m not found" >&2; return 1; }
  for dep in $(modinfo -F depends "$f" | tr ',' ' '); do addmod "$dep"; done
  rel=${f#$KSRC/}
  mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$rel")"
  cp "$f" "$ROOT/lib/modules/$KVER/$rel"
  echo "$rel" >> "$ROOT/lib/modules/$KVER/load-order"
}
for m in virtio_pci virtio_net dummy crc32_generic rdma_rxe ib_uverbs fuse; do addmod "$m"; done

# Userspace: rdma-core + perftest tools and every shared library they link.
copy_libs() {
  ldd "$1" 2>/dev/null | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | while read -r l; do
    [ -n "$l" ] && [ -e "$l" ] || continue
    cp -Ln "$l" "$ROOT/lib/x86_64-linux-gnu/" 2>/dev/null || true
  done
}
for b in ibv_devices ibv_devinfo ib_read_bw ib_write_bw ib_read_lat rdma; do
  p=$(command -v "$b") || { echo "mkinitramfs: missing $b" >&2; exit 1; }
  cp -L "$p" "$ROOT/usr/bin/"
  copy_libs "$p"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib/ld-linux-x86-64.so.2"
PROV=/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
mkdir -p "$ROOT/lib/x86_64-linux-gnu/libibverbs" "$ROOT/etc/libibverbs.d"
cp -L "$PROV" "$ROOT/lib/x86_64-linux-gnu/libibverbs/"
copy_libs "$PROV"
cp /etc/libibverbs.d/rxe.driver "$ROOT/etc/libibverbs.d/"
# Debian's libibverbs looks for providers under /usr/lib/x86_64-linux-gnu: point it at /lib.
mkdir -p "$ROOT/usr/lib"
ln -s ../../lib/x86_64-linux-gnu "$ROOT/usr/lib/x86_64-linux-gnu"

echo "root:x:0:0:root:/root:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
printf '127.0.0.1 localhost\n' > "$ROOT/etc/hosts"
cp "$HERE/init" "$ROOT/init"; chmod +x "$ROOT/init"

( cd "$ROOT" && find . -print0 | cpio --null -o -H newc --quiet ) | gzip -1 > "$RXE_DIR/initramfs.cpio.gz"
echo "mkinitramfs: $(du -sh "$RXE_DIR/initramfs.cpio.gz" | cut -f1) for kernel $KVER" >&2
