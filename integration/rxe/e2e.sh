#!/bin/sh
# In-VM end-to-end stage (run by vm-suite.sh from /payload): a real weed master, volume server
# and filer on 127.0.0.1, weedrdma beside the volume server (RDMA over rxe0), then
#   1. the rdma package's TestWeedCluster against them (bytes checked against the real volume
#      server's needle CRC32C, RDMA vs HTTP throughput), and TestWeedClusterCRCFault against two
#      more weedrdma (weedrdma-fault: built with -tags rdmafault, the only build with -fault.*)
#      started with -fault.corruptEvery=2 (bytes flipped after the transfer CRC) and
#      -fault.corruptStoredEvery=2 (before it: only the needle CRC32C can tell);
#   2. when /payload/weedfuse exists: check that weedrdma refuses a non-loopback address without
#      authentication and that the production weedrdma has no -fault.* flags, restart weedrdma
#      with a shared secret ([rdma] key in security.toml; the mount reads the same file),
#      upload files with weed filer.copy, mount with
#      -rdma.enabled, compare sha256 through the mount, read the mount's /metrics, require that
#      >= 99% of the bytes the mount fetched came over RDMA, kill weedrdma in the middle of a
#      read loop and check every read still succeeds (HTTP fallback), then start weedrdma again
#      and check that the mount reconnects and reads over RDMA again.
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
# The volume server answers /status before its first heartbeat reaches the master, and until
# then the master has no volume to assign ("no free volumes left"): wait for an assignment.
i=0
until wget -q -O - http://127.0.0.1:9333/dir/assign 2>/dev/null | grep -q '"fid"'; do
  i=$((i + 1)); [ $i -gt 120 ] && fail "the master assigns no file ids"
  sleep 0.5
done
echo "E2E master assigns file ids after ~$((i / 2))s more"
# start_weedrdma LOG [ARGS]: weedrdma beside the volume server; its pid in RDMAPID.
start_weedrdma() {
  log=$1; shift
  ./weedrdma -volume.server=127.0.0.1:8080 -listen=127.0.0.1:18515 -cache.mb=128 "$@" >$log 2>&1 & RDMAPID=$!; PIDS="$PIDS $RDMAPID"
  # Wait for its start line, not a fixed time: opening the device and registering its cache
  # took over a second once in CI, and the checks below read that line.
  i=0
  until grep -q 'msg=serving' $log 2>/dev/null; do
    kill -0 $RDMAPID 2>/dev/null || { cat $log; fail "weedrdma did not start"; }
    i=$((i + 1)); [ $i -gt 300 ] && { cat $log; fail "weedrdma did not log its start line in 30 s"; }
    sleep 0.1
  done
  head -2 $log
}
start_weedrdma $W/weedrdma.log
# Two that corrupt every other reply (fault injection), after and before its transfer CRC, for
# TestWeedClusterCRCFault; on ports of their own, so the mount never sees them.
./weedrdma-fault -volume.server=127.0.0.1:8080 -listen=127.0.0.1:18516 -cache.mb=16 -fault.corruptEvery=2 >$W/faulty.log 2>&1 & FAULTYPID=$!; PIDS="$PIDS $FAULTYPID"
./weedrdma-fault -volume.server=127.0.0.1:8080 -listen=127.0.0.1:18517 -cache.mb=16 -fault.corruptStoredEvery=2 >$W/faulty2.log 2>&1 & FAULTY2PID=$!; PIDS="$PIDS $FAULTY2PID"

echo "E2E stage 1: rdma client against real weed + weedrdma"
WEED_MASTER=127.0.0.1:9333 WEED_VOLUME=127.0.0.1:8080 WEEDRDMA=127.0.0.1:18515 WEEDRDMA_FAULTY=127.0.0.1:18516 \
  WEEDRDMA_STORED_FAULTY=127.0.0.1:18517 \
  ./rdma.test -test.run 'TestWeedCluster' -test.v -test.count=1 -test.timeout=300s 2>&1 || fail "TestWeedCluster"
kill $FAULTYPID $FAULTY2PID; wait $FAULTYPID $FAULTY2PID 2>/dev/null
grep -a -E 'FAULT|stopped' $W/faulty.log $W/faulty2.log | sed 's/^[^:]*://; s/^/E2E faulty weedrdma: /'

if [ ! -x ./weedfuse ]; then
  echo "E2E stage 2 skipped: no weedfuse binary"
  cleanup; exit 0
fi
echo "E2E stage 2: weedfuse mount with -rdma.enabled"
# Exposure: no authentication on a non-loopback address is refused at start (exit 2).
./weedrdma -volume.server=127.0.0.1:8080 -listen=0.0.0.0:18599 >$W/exposed.log 2>&1; r=$?
[ $r = 2 ] && grep -q 'not a loopback address' $W/exposed.log || { cat $W/exposed.log; fail "weedrdma on 0.0.0.0 without authentication: rc=$r, want 2"; }
echo "E2E weedrdma refuses 0.0.0.0 without a secret or mutual TLS: $(cat $W/exposed.log)"
./weedrdma -help 2>&1 | grep -q 'fault\.' && fail "the production weedrdma has -fault.* flags"
echo "E2E the production weedrdma has no -fault.* flags"
# From here on weedrdma and the mount share a secret: [rdma] key in security.toml (the mount
# finds it in $HOME/.seaweedfs/).
mkdir -p $W/home/.seaweedfs
printf '[rdma]\nkey = "%s"\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > $W/home/.seaweedfs/security.toml
SEC="-security=$W/home/.seaweedfs/security.toml"
kill $RDMAPID; wait $RDMAPID 2>/dev/null
start_weedrdma $W/weedrdma.log $SEC
grep -q 'peer_authentication="shared secret' $W/weedrdma.log || fail "weedrdma does not use the shared secret"
head -c 1048576 /dev/urandom > $W/src/one.bin
head -c 4194304 /dev/urandom > $W/src/four.bin
head -c 6815744 /dev/urandom > $W/src/six5.bin     # two chunks with the filer's 4 MiB chunking
head -c 9437184 /dev/urandom > $W/src/nine.bin
# All files together (~63 MiB) outgrow the mount's 16 MiB page cache plus the 32 MiB caches of
# decoded needles that the RDMA and the HTTP fetchers keep for partial reads, so that every pass
# fetches again.
head -c 41943040 /dev/urandom > $W/src/forty.bin
i=0; while [ $i -lt 40000 ]; do echo "line $i of a compressible text file read through weedfuse"; i=$((i + 1)); done > $W/src/text.txt
./weed filer.copy $W/src/* http://127.0.0.1:8888/e2e/ >$W/copy.log 2>&1 || { cat $W/copy.log; fail "filer.copy"; }
HOME=$W/home ./weedfuse -filer=127.0.0.1:8888 -dir=/mnt/w -filer.path=/e2e -rdma.enabled -rdma.sidecar=127.0.0.1:8080=127.0.0.1:18515 \
  -rdma.fallback -rdma.maxConcurrent=8 -rdma.timeoutMs=20000 -readerCacheSizeMB=16 -cacheCapacityMB=0 -metrics.address=127.0.0.1:9327 >$W/mount.log 2>&1 &
PIDS="$PIDS $!"
i=0; until [ -f /mnt/w/one.bin ]; do i=$((i + 1)); [ $i -gt 120 ] && { cat $W/mount.log; fail "mount"; }; sleep 0.5; done
MOUNTED=1
# metric NAME: the value of NAME, summed over its labels (e.g. every fallback reason).
metric() { wget -q -O - http://127.0.0.1:9327/metrics | awk -v k="$1" '{ n = $1; sub(/\{.*/, "", n) } n == k { s += $2; f = 1 } END { if (f) printf "%.0f\n", s }'; }
# Reads bypass the kernel's page cache: O_DIRECT where the mount takes it, else drop_caches
# before each pass. The mount's own caches are smaller than the files, so a pass over all of
# them in order fetches again.
DIRECT=""
dd if=/mnt/w/one.bin of=/dev/null bs=1M count=1 iflag=direct 2>/dev/null && DIRECT=1
rd() { if [ -n "$DIRECT" ]; then dd if="$1" bs=1M iflag=direct 2>/dev/null; else cat "$1"; fi; }
check() { # label
  echo 3 > /proc/sys/vm/drop_caches
  for f in $W/src/*; do
    a=$(sha256sum < "$f"); b=$(rd "/mnt/w/$(basename "$f")" | sha256sum) || fail "$1: read $(basename "$f")"
    [ "$a" = "$b" ] || fail "$1: sha256 of $(basename "$f") differs"
  done
}
metrics() { # label: the mount's RDMA and HTTP counters, as E2E lines
  echo "E2E $1; metrics:"
  wget -q -O - http://127.0.0.1:9327/metrics | grep -E '^weedfuse_(rdma|http_(reads|bytes|fetch)|cache_fetched)' | sed 's/^/E2E   /'
}
need_rdma() { # message: a failure with E2E_REQUIRE_RDMA, else a warning
  [ -n "$E2E_REQUIRE_RDMA" ] && fail "$1"
  echo "E2E WARN: $1"
}
now() { cut -d' ' -f1 /proc/uptime; }
pass() { # label: one timed pass over every file
  t0=$(now); check "$1"
  echo "E2E pass \"$1\": all sha256 match, $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s"
}
share() { # rdma_bytes http_bytes: the RDMA share in percent
  awk -v r="${1:-0}" -v h="${2:-0}" 'BEGIN { if (r + h > 0) printf "%.2f", 100 * r / (r + h); else print 0 }'
}
echo "E2E reads bypass the kernel's page cache with $([ -n "$DIRECT" ] && echo 'O_DIRECT (dd iflag=direct)' || echo 'drop_caches')"
pass "first read"
metrics "sha256 match through the mount"
R1=$(metric weedfuse_rdma_reads_total)
[ -n "$R1" ] && [ "$R1" -gt 0 ] || need_rdma "the mount read nothing over RDMA (weedfuse_rdma_reads_total=$R1)"
pass "rdma"
# Before weedrdma is killed, nearly every byte the mount fetched must have come over RDMA. Like
# with like: both counters are the logical bytes each fetcher returned to the page cache (both
# move whole needles underneath, and both count bytes served from their needle caches).
RB=$(metric weedfuse_rdma_bytes_total); HB=$(metric weedfuse_http_bytes_total); FB=$(metric weedfuse_cache_fetched_bytes_total)
echo "E2E RDMA share before the kill: rdma_bytes=$RB http_bytes=$HB (cache_fetched_bytes=$FB): $(share "$RB" "$HB")% of the fetched bytes came over RDMA"
awk -v r="${RB:-0}" -v h="${HB:-0}" 'BEGIN { exit !(r > 0 && 100 * r >= 99 * (r + h)) }' ||
  need_rdma "only $(share "$RB" "$HB")% of the bytes the mount fetched came over RDMA (want >= 99%)"

# Kill weedrdma in the middle of a pass: reads in flight and after fall back to HTTP, and
# every one must still return the right bytes.
F1=$(metric weedfuse_rdma_fallbacks_total)
(sleep 1; kill $RDMAPID; echo "E2E killed weedrdma during the read loop") & KILLER=$!
pass "weedrdma killed"
wait $KILLER; wait $RDMAPID 2>/dev/null
F2=$(metric weedfuse_rdma_fallbacks_total)
[ "${F2:-0}" -gt "${F1:-0}" ] || pass "after the kill"  # the kill came after the pass's last read
metrics "all reads succeeded after weedrdma died"
F2=$(metric weedfuse_rdma_fallbacks_total); HB2=$(metric weedfuse_http_bytes_total)
if [ -n "$R1" ] && [ "$R1" -gt 0 ] && { [ "${F2:-0}" -le "${F1:-0}" ] || [ "${HB2:-0}" -le "${HB:-0}" ]; }; then
  fail "weedrdma died but the mount counted no RDMA fallback or HTTP read (fallbacks $F1 -> $F2, http_bytes $HB -> $HB2)"
fi
grep -a -E 'rdma' $W/mount.log | tail -2 | sed 's/^/E2E mount.log: /'

# Start weedrdma again: the mount reconnects (backoff), its breaker half-opens, and reads
# go over RDMA again.
if [ -n "$R1" ] && [ "$R1" -gt 0 ]; then
  R2=$(metric weedfuse_rdma_reads_total); B2=$(metric weedfuse_rdma_bytes_total); C2=$(metric weedfuse_rdma_reconnects_total)
  HB2=$(metric weedfuse_http_bytes_total)
  t0=$(now)
  start_weedrdma $W/weedrdma2.log $SEC
  i=0; until [ "$(metric weedfuse_rdma_connected)" = 1 ]; do
    i=$((i + 1)); [ $i -gt 120 ] && fail "the mount did not reconnect to the restarted weedrdma in 60s"
    sleep 0.5
  done
  echo "E2E restarted weedrdma; the mount reconnected $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')s later"
  pass "resumed"
  metrics "reads after the restart"
  R3=$(metric weedfuse_rdma_reads_total); B3=$(metric weedfuse_rdma_bytes_total); C3=$(metric weedfuse_rdma_reconnects_total)
  HB3=$(metric weedfuse_http_bytes_total)
  echo "E2E RDMA resumed: rdma_reads $R2 -> $R3, rdma_bytes $B2 -> $B3, reconnects $C2 -> $C3, http_bytes $HB2 -> $HB3 ($(share $((B3 - B2)) $((HB3 - HB2)))% of the bytes fetched since the restart over RDMA)"
  [ "$R3" -gt "$R2" ] && [ "$B3" -gt "$B2" ] && [ "$C3" -gt "$C2" ] ||
    need_rdma "RDMA did not resume after weedrdma restarted (rdma_reads $R2 -> $R3, reconnects $C2 -> $C3)"
  # Reads that came while the half-open breaker's probe was in flight went over HTTP; once
  # it closed, the next pass must be RDMA again throughout.
  pass "resumed, breaker closed"
  B4=$(metric weedfuse_rdma_bytes_total); HB4=$(metric weedfuse_http_bytes_total)
  echo "E2E after the restart, breaker closed: rdma_bytes +$((B4 - B3)), http_bytes +$((HB4 - HB3)): $(share $((B4 - B3)) $((HB4 - HB3)))% over RDMA"
  awk -v r=$((B4 - B3)) -v h=$((HB4 - HB3)) 'BEGIN { exit !(r > 0 && 100 * r >= 99 * (r + h)) }' ||
    need_rdma "after the restart only $(share $((B4 - B3)) $((HB4 - HB3)))% of the fetched bytes came over RDMA (want >= 99%)"
  grep -a -E 'rdma' $W/mount.log | tail -1 | sed 's/^/E2E mount.log: /'
fi
cleanup
echo "E2E PASS"
