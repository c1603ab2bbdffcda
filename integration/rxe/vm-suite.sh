#!/bin/sh
# In-VM driver (copied to /payload/run.sh by suite.sh). Stages from /payload/stages:
#   engine: the rdma package's test binary, RDMA_REQUIRED=1 (unit tests + rxe0 loopback tests,
#           incl. RDMA-BENCH throughput lines for 1 MiB and 4 MiB needles vs HTTP)
#   perf:   perftest ib_read_bw at 1 MiB and 4 MiB, the same bytes moved, same boot
#   e2e:    e2e.sh: a real weed cluster, weedrdma, and (when present) the weedfuse mount
set -o pipefail
cd /payload
STAGES=$(cat /payload/stages)
[ -f /payload/env ] && . /payload/env
rc=0
up() { cut -d' ' -f1 /proc/uptime; }
# Reserve hugepages so the arenas take the MAP_HUGETLB path (the tests log which one they got).
echo 96 > /proc/sys/vm/nr_hugepages
echo "== device"
ibv_devinfo | grep -E 'hca_id|state|active_mtu|link_layer'
./weedrdma -list || rc=1
for st in $STAGES; do
  case $st in
  engine)
    echo "== engine tests"
    RDMA_REQUIRED=1 ./rdma.test -test.v -test.count=1 -test.timeout=480s ${ENGINE_RUN:+-test.run "$ENGINE_RUN"} 2>&1; r=$?
    echo "== engine tests rc=$r uptime=$(up)s"; [ $r = 0 ] || rc=1 ;;
  perf)
    echo "== perftest ib_read_bw"
    for s in 1048576 4194304; do
      n=$((48 * 1048576 / s))
      ib_read_bw -d rxe0 -x 1 -F -s $s -n $n >/tmp/ibsrv.log 2>&1 &
      sleep 1
      ib_read_bw -d rxe0 -x 1 -F -s $s -n $n "$IP" >/tmp/ibcli.log 2>&1 || { cat /tmp/ibcli.log; rc=1; }
      wait
      awk -v s=$s '$1==s {print "PERF ib_read_bw size=" s " iters=" $2 " MBps=" $4}' /tmp/ibcli.log
    done
    echo "== perf done uptime=$(up)s" ;;
  e2e)
    echo "== e2e"
    sh ./e2e.sh; r=$?
    echo "== e2e rc=$r uptime=$(up)s"; [ $r = 0 ] || rc=1 ;;
  esac
done
exit $rc
