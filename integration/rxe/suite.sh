#!/bin/bash
# suite.sh [engine] [perf] [e2e]: build the RDMA engine's test binary, weedrdma (and for e2e
# weed and weedfuse), boot the Soft-RoCE VM once with them and run the stages there
# (default: engine perf). Prints a summary (RDMA-BENCH: RDMA path vs ib_read_bw and HTTP) and exits
# non-zero if any stage failed. Kernel and initramfs are cached in <repo>/.rxe.
# Env: RACE=1 (race-enabled test binary), ENGINE_RUN (test regexp), RDMA_BENCH_CONC/_MB/_ROUNDS,
# RDMA_BENCH_AB=1 (TestRXETransferAB: the transfer as it was vs the pipelined CRC vs crc32c's pick),
# E2E_REQUIRE_RDMA=1 (the mount must read over RDMA), WEED_BIN (weed binary for e2e; default the one on PATH), TIMEOUT (s), KEEP=1 keeps the stage dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
export RXE_DIR=${RXE_DIR:-$REPO/.rxe}
STAGES=${*:-engine perf}
[ -f "$RXE_DIR/kernel/boot/vmlinux" ] || "$HERE/setup.sh"
if [ ! -f "$RXE_DIR/initramfs.cpio.gz" ] || [ "$HERE/init" -nt "$RXE_DIR/initramfs.cpio.gz" ] \
   || [ "$HERE/mkinitramfs.sh" -nt "$RXE_DIR/initramfs.cpio.gz" ]; then
  "$HERE/mkinitramfs.sh"
fi
ST=$(mktemp -d "$RXE_DIR/suite.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$ST"' EXIT
cd "$REPO"
CGO_ENABLED=1 go test -c -tags rdma ${RACE:+-race} -o "$ST/rdma.test" ./rdma
CGO_ENABLED=1 go build -tags rdma -o "$ST/weedrdma" ./cmd/weedrdma
# Fault injection (-fault.*) exists only in a binary built with the rdmafault tag.
CGO_ENABLED=1 go build -tags rdma,rdmafault -o "$ST/weedrdma-fault" ./cmd/weedrdma
cp "$HERE/vm-suite.sh" "$ST/run.sh"
echo "$STAGES" > "$ST/stages"
# Settings passed on to the VM (see vm-suite.sh and the rdma tests).
for v in ENGINE_RUN RDMA_BENCH_CONC RDMA_BENCH_MB RDMA_BENCH_ROUNDS RDMA_BENCH_AB E2E_REQUIRE_RDMA; do
  [ -z "${!v:-}" ] || printf '%s=%q\nexport %s\n' "$v" "${!v}" "$v" >> "$ST/env"
done
MEM=${MEM:-2048}
case " $STAGES " in *" e2e "*)
  WEED=${WEED_BIN:-$(command -v weed)}
  # A pyenv shim is a script: ask pyenv for the real (static) binary.
  if ! head -c4 "$WEED" | grep -q ELF; then WEED=$(pyenv which weed); fi
  cp "$WEED" "$ST/weed"
  cp "$HERE/e2e.sh" "$ST/e2e.sh"
  if [ -d "$REPO/cmd/weedfuse" ]; then
    CGO_ENABLED=1 go build -tags rdma -o "$ST/weedfuse" ./cmd/weedfuse || echo "suite: weedfuse does not build; e2e runs without the mount" >&2
    # go-fuse mounts through fusermount when it is not told to mount directly.
    for f in fusermount3 fusermount; do p=$(command -v $f) && cp "$p" "$ST/"; done
  fi
  MEM=4096 ;;
esac
LOG=$RXE_DIR/suite.log
set +e
BUILT=$SECONDS
MEM=$MEM LOG=$LOG TIMEOUT=${TIMEOUT:-900} "$HERE/vmrun.sh" "$ST" >/dev/null
RC=$?
set -e
echo "---- summary ($LOG)"
grep -a -E '^(--- |ok|FAIL|PASS$)|^== .*(rc=|done)|RDMA-[A-Z]+|WEED-BENCH|PERF |E2E|RXE-RESULT' "$LOG" | sed 's/^ *//'
echo "suite: rc=$RC in ${SECONDS}s (build ${BUILT}s, VM $((SECONDS - BUILT))s)"
exit $RC
