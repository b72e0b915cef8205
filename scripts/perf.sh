#!/usr/bin/env bash
# The performance table of docs/PERFORMANCE.md, measured with the project's
# own tools on this machine (nodes and load generator on the same host).
#
#   scripts/perf.sh          the full table (about 5 minutes)
#   scripts/perf.sh short    a short version of every row (make bench, < 2 min)
#
# Every row starts fresh nodes on loopback in a temporary directory and
# prints edgeload's summary; JSON results are kept in $OUT (default
# ./perf-results). Rows:
#   1. one node, maximum accepted sends (closed loop, 512 in flight)
#   2. one node, latency at a fixed offered rate (open loop)
#   3. three nodes (three processes), maximum accepted sends, every 201
#      fsynced on a majority of the shard's replicas
#   4. three nodes, latency at a fixed offered rate (2,000/s, then 500/s
#      and 1,000/s), with the three servers' CPU per accepted send
#   5. idle sockets on one node: server memory per socket
#   6. connect storm: sockets opened within 10 s, time to ready
#   7. an idle three-node cluster (no clients) with 16 and with 64 shards:
#      the three servers' CPU
#   8. three nodes, users with one device against users with two (a socket
#      each, every message to each device): closed loop and 500/s
# ROWS picks groups of rows (default all): one (1-2), three (3-4),
# sockets (5), storm (6), idle (7), devices (8), e.g. ROWS="three idle"
# scripts/perf.sh. The default leaves out devices.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-full}
OUT=${OUT:-perf-results}
GO=${GO:-go}
mkdir -p bin "$OUT"
if [ "$MODE" = short ]; then
  WIN=5s; WARM=1s; USERS=2000; IDLE=5000; STORM=3000; STORM_RATE=1000
else
  WIN=20s; WARM=3s; USERS=2000; IDLE=19000; STORM=10000; STORM_RATE=1000
fi
ROWS=" ${ROWS:-one three sockets storm idle} "
row() { [[ "$ROWS" == *" $1 "* ]]; }
RATE1=${RATE1:-2000}   # row 2
RATE3=${RATE3:-2000}   # row 4
TMP=$(mktemp -d /tmp/edgenode-perf.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
. scripts/lib.sh # node, wait_ready, wait_balanced, cpu_ticks; EDGENODE=path runs another build

load() { # NAME TARGETS extra-flags...
  local name=$1 targets=$2; shift 2
  echo "== $name"
  bin/edgeload --targets "$targets" --jwt-secret "$SECRET" --json "$OUT/$name.json" "$@" 2>&1 | sed -n '/^edgeload/,$p'
}

# 1-2: one node
if row one; then
P=$(node one 18800 eu); wait_ready http://127.0.0.1:18800
load one-node-max http://127.0.0.1:18800 --users $USERS --senders 1.0 --rate 0 --concurrency 512 --warmup $WARM --duration $WIN --server-pid $P
load one-node-rate http://127.0.0.1:18800 --users $USERS --senders 1.0 --rate $RATE1 --warmup $WARM --duration $WIN --server-pid $P
kill -9 $P
fi

# 3-4: three nodes, three regions
if row three; then
N1=$(node n1 18810 eu); wait_ready http://127.0.0.1:18810
N2=$(node n2 18820 us 127.0.0.1:18811); N3=$(node n3 18830 ap 127.0.0.1:18811)
wait_ready http://127.0.0.1:18820 http://127.0.0.1:18830
wait_balanced 127.0.0.1:18813
T3=http://127.0.0.1:18810,http://127.0.0.1:18820,http://127.0.0.1:18830
load three-node-max $T3 --users $USERS --senders 1.0 --rate 0 --concurrency 512 --warmup $WARM --duration $WIN
load three-node-rate $T3 --users $USERS --senders 1.0 --rate $RATE3 --warmup $WARM --duration $WIN --cpu-pids $N1,$N2,$N3
load three-node-500 $T3 --users $USERS --senders 1.0 --rate 500 --warmup $WARM --duration $WIN --cpu-pids $N1,$N2,$N3
load three-node-1000 $T3 --users $USERS --senders 1.0 --rate 1000 --warmup $WARM --duration $WIN --cpu-pids $N1,$N2,$N3
kill -9 $N1 $N2 $N3
fi

# 8: two devices per user against one, on one cluster, alternating
if row devices; then
N1=$(node d1 18910 eu); wait_ready http://127.0.0.1:18910
N2=$(node d2 18920 us 127.0.0.1:18911); N3=$(node d3 18930 ap 127.0.0.1:18911)
wait_ready http://127.0.0.1:18920 http://127.0.0.1:18930
wait_balanced 127.0.0.1:18913
T3=http://127.0.0.1:18910,http://127.0.0.1:18920,http://127.0.0.1:18930
for D in 1 2 1 2; do
  # Each round its own users: a device linked later gets only what follows.
  F=$((3000000 + D * 100000 + RANDOM))
  load devices-$D-max $T3 --first-user $F --users $USERS --devices $D --senders 1.0 --rate 0 --concurrency 512 --warmup $WARM --duration $WIN
  load devices-$D-500 $T3 --first-user $((F + 50000)) --users $USERS --devices $D --senders 1.0 --rate 500 --warmup $WARM --duration $WIN --cpu-pids $N1,$N2,$N3
done
kill -9 $N1 $N2 $N3
fi

# 5: idle sockets (spread over processes: 20,000 open files per process here)
if row sockets; then
P=$(node idle 18840 eu); wait_ready http://127.0.0.1:18840
load idle-sockets http://127.0.0.1:18840 --idle --users $IDLE --procs 2 --connect-rate 2000 --duration 5s --server-pid $P
kill -9 $P
fi

# 6: connect storm
if row storm; then
P=$(node storm 18850 eu); wait_ready http://127.0.0.1:18850
load connect-storm http://127.0.0.1:18850 --idle --users $STORM --procs 2 --connect-rate $STORM_RATE --duration 2s --server-pid $P
kill -9 $P
fi

# 7: an idle cluster: the three servers' CPU with no client, once every
# shard has its three voters and leaders are spread.
if row idle; then
for S in 16 64; do
  base=$((18860 + S))
  N1=$(SHARDS=$S node idle$S-1 $base eu); wait_ready http://127.0.0.1:$base
  N2=$(SHARDS=$S node idle$S-2 $((base+100)) us 127.0.0.1:$((base+1))); N3=$(SHARDS=$S node idle$S-3 $((base+200)) ap 127.0.0.1:$((base+1)))
  wait_ready http://127.0.0.1:$((base+100)) http://127.0.0.1:$((base+200))
  wait_balanced 127.0.0.1:$((base+3))
  sleep 5 # placement's last moves settle
  c0=$(cpu_ticks $N1 $N2 $N3); t0=$(date +%s.%N)
  sleep "${WIN%s}"
  c1=$(cpu_ticks $N1 $N2 $N3); t1=$(date +%s.%N)
  echo "== idle-cluster-$S"
  python3 -c "import os; print('idle:      three nodes, $S shards, no clients: %.3f cores over %.0f s' % (($c1-$c0)/os.sysconf('SC_CLK_TCK')/($t1-$t0), $t1-$t0))" | tee "$OUT/idle-cluster-$S.txt"
  kill -9 $N1 $N2 $N3
done
fi
