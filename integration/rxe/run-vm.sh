#!/bin/bash
# run-vm.sh: boot Debian's kernel with $INITRD (default: the base initramfs) under qemu TCG.
# Never KVM: /dev/kvm on the development machines cannot boot a stock kernel.
# Env: MEM (MiB, default 2048), SMP (default 2), NIC (qemu netdev args; "-nic none" for none).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
RXE_DIR=${RXE_DIR:-$(cd "$HERE/../.." && pwd)/.rxe}
KVER=$(ls "$RXE_DIR/kernel/lib/modules" | head -1)
# The ELF vmlinux boots through PVH, skipping SeaBIOS and in-guest decompression.
KERNEL=$RXE_DIR/kernel/boot/vmlinux
[ -f "$KERNEL" ] || KERNEL=$RXE_DIR/kernel/boot/vmlinuz-$KVER
exec qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "${SMP:-2}" -m "${MEM:-2048}" \
  -nographic -no-reboot -kernel "$KERNEL" -initrd "${INITRD:-$RXE_DIR/initramfs.cpio.gz}" \
  ${NIC:--netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile=} \
  -append "console=ttyS0 panic=-1 quiet loglevel=4 $*"
