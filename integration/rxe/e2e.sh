#!/bin/sh
# In-VM end-to-end stage (run by vm-suite.sh from /payload): a real weed master, volume server
# and filer on 127.0.0.1, weedrdma beside the volume server (RDMA over rxe0), then
#   1. the rdma package's TestWeedCluster against them (bytes and RDMA vs HTTP throughput);
#   2. when /payload/weedfuse exists: upload files with weed filer.copy, mount with
#      -rdma.enabled, compare sha256 through the mount, read the mount's /metrics, kill
#      weedrdma in the middle of a read loop and check every read still succeeds (HTTP fallback).
# Prints E2E lines; exits non-zero on any failure.
cd /payload
W=/tmp/weed; mkdir -p $W/m $W/v $W/f $W/src /mnt/w
PIDS=""
fail() { echo "E2E FAIL: $*"; cleanup; exit 1; }
cleanup() {
  [ -n "$MOUNTED" ] && { umount /mnt/w 2>/dev/null || umount -l /mnt/w; }
  for p in $PIDS; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
}
wait_http() { # url what
  i=0
  until wget -q -O /dev/null "$1" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 240 ] && fail "$2 not ready"
    sleep 0.5
  done
  echo "E2E $2 ready after ~$((i / 2))s"
}
ARGS="-ip=127.0.0.1 -ip.bind=127.0.0.1"
./weed master $ARGS -port=9333 -mdir=$W/m -telemetry=false -volumeSizeLimitMB=64 >$W/master.log 2>&1 & PIDS="$PIDS $!"
./weed volume $ARGS -port=8080 -dir=$W/v -mserver=127.0.0.1:9333 -max=8 >$W/volume.log 2>&1 & PIDS="$PIDS $!"
./weed filer $ARGS -port=8888 -master=127.0.0.1:9333 >$W/filer.log 2>&1 & PIDS="$PIDS $!"
wait_http http://127.0.0.1:9333/cluster/status master
wait_http http://127.0.0.1:8080/status volume
wait_http http://127.0.0.1:8888/ filer
./weedrdma -volume.server=127.0.0.1:8080 -listen=127.0.0.1:18515 -cache.mb=128 >$W/weedrdma.log 2>&1 & RDMAPID=$!; PIDS="$PIDS $RDMAPID"
sleep 1
kill -0 $RDMAPID 2>/dev/null || { cat $W/weedrdma.log; fail "weedrdma did not start"; }
head -1 $W/weedrdma.log

echo "E2E stage 1: rdma client against real weed + weedrdma"
WEED_MASTER=127.0.0.1:9333 WEED_VOLUME=127.0.0.1:8080 WEEDRDMA=127.0.0.1:18515 \
  ./rdma.test -test.run 'TestWeedCluster' -test.v -test.count=1 -test.timeout=300s 2>&1 || fail "TestWeedCluster"

if [ ! -x ./weedfuse ]; then
  echo "E2E stage 2 skipped: no weedfuse binary"
  cleanup; exit 0
fi
echo "E2E stage 2: weedfuse mount with -rdma.enabled"
head -c 1048576 /dev/urandom > $W/src/one.bin
head -c 4194304 /dev/urandom > $W/src/four.bin
head -c 6815744 /dev/urandom > $W/src/six5.bin     # two chunks with the filer's 4 MiB chunking
head -c 9437184 /dev/urandom > $W/src/nine.bin      # all files together outgrow the mount's 16 MiB cache
i=0; while [ $i -lt 40000 ]; do echo "line $i of a compressible text file read through weedfuse"; i=$((i + 1)); done > $W/src/text.txt
./weed filer.copy $W/src/* http://127.0.0.1:8888/e2e/ >$W/copy.log 2>&1 || { cat $W/copy.log; fail "filer.copy"; }
./weedfuse -filer=127.0.0.1:8888 -dir=/mnt/w -filer.path=/e2e -rdma.enabled -rdma.sidecar=127.0.0.1:8080=127.0.0.1:18515 \
  -rdma.fallback -rdma.maxConcurrent=8 -rdma.timeoutMs=20000 -cacheCapacityMB=16 -metrics.address=127.0.0.1:9327 >$W/mount.log 2>&1 &
PIDS="$PIDS $!"
i=0; until [ -f /mnt/w/one.bin ]; do i=$((i + 1)); [ $i -gt 120 ] && { cat $W/mount.log; fail "mount"; }; sleep 0.5; done
MOUNTED=1
# metric NAME: the value of NAME, summed over its labels (e.g. every fallback reason).
metric() { wget -q -O - http://127.0.0.1:9327/metrics | awk -v k="$1" '{ n = $1; sub(/\{.*/, "", n) } n == k { s += $2; f = 1 } END { if (f) print s }'; }
check() { # label
  for f in $W/src/*; do
    a=$(sha256sum < "$f"); b=$(sha256sum < "/mnt/w/$(basename "$f")") || fail "$1: read $(basename "$f")"
    [ "$a" = "$b" ] || fail "$1: sha256 of $(basename "$f") differs"
  done
}
check "first read"
echo "E2E sha256 match through the mount; metrics:"; wget -q -O - http://127.0.0.1:9327/metrics | grep -i -E 'rdma|http' | sed 's/^/E2E   /'
R1=$(metric weedfuse_rdma_reads_total)
F1=$(metric weedfuse_rdma_fallbacks_total)
[ -n "$R1" ] && [ "$R1" -gt 0 ] || { [ -n "$E2E_REQUIRE_RDMA" ] && fail "the mount read nothing over RDMA (weedfuse_rdma_reads_total=$R1)"; echo "E2E WARN: mount reports no RDMA reads (weedfuse_rdma_reads_total=$R1)"; }
# Read in a loop (dropping the kernel's and the mount's caches where possible), killing weedrdma midway.
n=0
while [ $n -lt 6 ]; do
  echo 3 > /proc/sys/vm/drop_caches
  [ $n = 3 ] && { kill $RDMAPID; echo "E2E killed weedrdma during the read loop"; }
  check "loop $n"
  n=$((n + 1))
done
echo "E2E all reads succeeded after weedrdma died; metrics:"; wget -q -O - http://127.0.0.1:9327/metrics | grep -i rdma | sed 's/^/E2E   /'
F2=$(metric weedfuse_rdma_fallbacks_total)
if [ -n "$R1" ] && [ "$R1" -gt 0 ] && [ "${F2:-0}" -le "${F1:-0}" ]; then
  fail "weedrdma died but the mount counted no RDMA fallback (weedfuse_rdma_fallbacks_total $F1 -> $F2)"
fi
grep -a -E 'rdma' $W/mount.log | tail -5 | sed 's/^/E2E mount.log: /'
cleanup
echo "E2E PASS"
