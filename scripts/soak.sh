#!/usr/bin/env bash
# Soak: is every node's state bounded by its users? One long run per
# cluster size at a fixed offered rate, with the same users all along, and
# every node sampled once per interval (make soak).
#
#   1. one node, 2,000 sends/s offered, for SOAK_MINUTES (default 60)
#   2. three nodes (three processes, regions eu/us/ap, shards balanced
#      first), 1,000 sends/s, for SOAK3_MINUTES (default 30), after a
#      prefill: the same users at SOAK3_PREFILL_RATE (2,000/s) for
#      SOAK3_PREFILL (15m), not sampled. Without it the idempotency records
#      (8 per sender and shard) still fill for ~40 minutes at 1,000/s, and
#      the run would measure the fill, not the steady state. The one-node
#      run reaches its bound by minute ~23 on its own.
#
# Each run: SOAK_USERS (10,000) users, each with one WebSocket, all of them
# sending (--senders 1.0) to random others and acknowledging what they get.
# edgeload keeps its sockets for the whole run and appends one JSON line per
# SOAK_INTERVAL (default 60s) to $SOAK_OUT/<run>.jsonl; as each line appears,
# `soakplot sample` reads every node: VmRSS, go_memstats_heap_inuse_bytes
# and the live heap after the last GC (heap_live_bytes: the GC's goal
# divided by 1 + GOGC/100; heap in use swings with the GC's cycle),
# every edgenode_state_entries{kind} series, edgenode_queued_messages (from
# /metrics), du -sb of its data dir and the newest raft snapshot per shard
# (state.bin), and rewrites $SOAK_OUT/<run>.csv (one row per node per
# interval). At the end soakplot draws $SOAK_OUT/<run>.svg, and edgeload's
# summary goes to $SOAK_OUT/<run>.txt. The load generator's columns of the
# CSV (sends_per_s, p50/p99/max_ms of send→deliver, errors) are the whole
# run's, repeated on each node's row; "snapshots" counts the node's raft
# snapshots that started in the interval (from the snapshot directories'
# names), to tell a snapshot's latency from anything else's. For tracing,
# soakplot also writes $SOAK_OUT/<run>-slow.csv (each interval's 20 slowest
# deliveries: send time, latency, recipient, whose shard is
# relaylog.ShardOf) and $SOAK_OUT/<run>-snapshots.csv (every raft snapshot
# it saw: node, shard, start from the directory name, end from state.bin's
# modification time; raft keeps two per shard, so a shard that snapshots
# more than twice between samples loses some).
#
#   SOAK_MINUTES=2 SOAK3_MINUTES=2 SOAK_INTERVAL=20s scripts/soak.sh   smoke run
#   SOAK_ONLY=one|three     only one of the two runs
#   SOAK_OUT=dir            where results go (default docs/soak)
#   SOAK_USERS, SOAK_RATE1 (2000), SOAK_RATE3 (1000), SOAK_WARMUP (10s),
#   SOAK3_PREFILL (15m; 0 for none), SOAK3_PREFILL_RATE (2000)
#
# Nodes listen on loopback ports 19800-19833 (scripts/perf.sh uses 188xx).
# Every process the script starts is killed when it exits; the temporary
# directory (data dirs, node and edgeload logs) is removed unless a run
# failed, or SOAK_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
SOAK_MINUTES=${SOAK_MINUTES:-60}
SOAK3_MINUTES=${SOAK3_MINUTES:-30}
SOAK_INTERVAL=${SOAK_INTERVAL:-60s}
SOAK_ONLY=${SOAK_ONLY:-}
SOAK_OUT=${SOAK_OUT:-docs/soak}
SOAK_USERS=${SOAK_USERS:-10000}
SOAK_RATE1=${SOAK_RATE1:-2000}
SOAK_RATE3=${SOAK_RATE3:-1000}
SOAK_WARMUP=${SOAK_WARMUP:-10s}
SOAK3_PREFILL=${SOAK3_PREFILL:-15m}
SOAK3_PREFILL_RATE=${SOAK3_PREFILL_RATE:-2000}
case "$SOAK_ONLY" in ""|one|three) ;; *) echo "SOAK_ONLY must be one or three" >&2; exit 2 ;; esac

mkdir -p bin "$SOAK_OUT"
$GO build -tags hashicorpmetrics -o bin/edgenode ./cmd/edgenode
$GO build -tags hashicorpmetrics -o bin/edgeload ./cmd/edgeload
$GO build -tags hashicorpmetrics -o bin/soakplot ./scripts/soakplot

SECRET=soak-jwt-secret-0123456789abcdef0123456789
CSECRET=soak-cluster-secret-0123456789abcdef012345
TMP=$(mktemp -d /tmp/edgenode-soak.XXXXXX)
PIDS=()
FAILED=0
cleanup() {
  local rc=$? p
  [ $rc = 0 ] || FAILED=1
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  if [ "$FAILED" = 0 ] && [ "${SOAK_KEEP:-0}" = 0 ]; then rm -rf "$TMP"; else echo "soak: logs and data kept in $TMP" >&2; fi
}
trap cleanup EXIT
# stop PID...: kills processes this script started and forgets them.
stop() {
  local p
  for p in "$@"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  forget "$@"
}
# forget PID...: drops reaped processes from the cleanup list.
forget() {
  local p q keep=()
  for q in "${PIDS[@]:-}"; do
    for p in "$@"; do [ "$q" = "$p" ] && continue 2; done
    [ -n "$q" ] && keep+=("$q")
  done
  PIDS=("${keep[@]:-}")
}
trap 'FAILED=1; exit 130' INT TERM

# node NAME PORTBASE REGION [JOIN]: starts a node in the background; its pid
# is in $NODE_PID (not printed: a $(...) subshell would lose it for cleanup).
node() {
  local name=$1 base=$2 region=$3 join=${4:-}
  local args=(--data-dir "$TMP/$name" --http-addr 127.0.0.1:$base --gossip-addr 127.0.0.1:$((base+1))
    --cluster-addr 127.0.0.1:$((base+2)) --admin-addr 127.0.0.1:$((base+3)) --region "$region" --cluster-secret "$CSECRET" --jwt-secret "$SECRET"
    --send-rate 1000 --send-burst 1000 --log-level warn
    --max-connections-per-ip 1000000) # edgeload's thousands of sockets share loopback addresses
  [ -n "$join" ] && args+=(--join "$join")
  bin/edgenode "${args[@]}" >"$TMP/$name.log" 2>&1 &
  NODE_PID=$!
  PIDS+=($NODE_PID)
}

wait_ready() { # URL...
  local u
  for u in "$@"; do
    for _ in $(seq 1 150); do curl -fs "$u/readyz" >/dev/null 2>&1 && continue 2; sleep 0.2; done
    echo "soak: $u never became ready" >&2; return 1
  done
}

# wait_balanced ADMIN_ADDR: every shard has 3 voters and leaders are spread evenly.
wait_balanced() {
  for _ in $(seq 1 90); do
    if bin/edgenode shards --addr "$1" --cluster-secret "$CSECRET" --json 2>/dev/null | python3 -c '
import json,sys,collections
s=json.load(sys.stdin)
c=collections.Counter(x["leader"] for x in s)
ok=all(len(x["voters"])==3 and x["leader"] for x in s) and len(c)==3 and max(c.values())-min(c.values())<=1
sys.exit(0 if ok else 1)'; then return 0; fi
    sleep 1
  done
  echo "soak: cluster did not balance" >&2; return 1
}

# prefill RUN DURATION RATE TARGETS: the soak's users send and acknowledge
# for DURATION before the measured run, so that it starts at steady state.
# Its errors are logged, not fatal: only the measured run is judged.
prefill() {
  local run=$1 d=$2 rate=$3 targets=$4
  case "$d" in ""|0|0s|0m) return 0 ;; esac
  echo "== $run: prefill, $SOAK_USERS users, $rate sends/s, $d (not sampled)"
  bin/edgeload --targets "$targets" --jwt-secret "$SECRET" --users "$SOAK_USERS" --senders 1.0 --rate "$rate" \
    --warmup 0s --duration "$d" --json "$TMP/$run.prefill.json" >"$TMP/$run.prefill.txt" 2>"$TMP/$run.prefill.log" &
  local load=$!
  PIDS+=($load)
  wait $load || echo "soak: $run prefill exited $? (see $TMP/$run.prefill.txt)" >&2
  forget $load
  grep -E "^(accepted|errors|sends)" "$TMP/$run.prefill.txt" || tail -3 "$TMP/$run.prefill.txt" || true
}

# soak RUN TITLE MINUTES RATE TARGETS NODESPEC...: one long edgeload run
# with a sampler next to it, then the plot. NODESPEC is NAME,PID,URL,DATADIR.
soak() {
  local run=$1 title=$2 minutes=$3 rate=$4 targets=$5; shift 5
  local specs=() s
  for s in "$@"; do specs+=(-node "$s"); done
  local report="$SOAK_OUT/$run.jsonl"
  rm -f "$report" "$SOAK_OUT/$run.csv"
  echo "== $run: $SOAK_USERS users, $rate sends/s, ${minutes} min, a sample every $SOAK_INTERVAL"
  bin/soakplot sample -report "$report" -out "$SOAK_OUT/$run.csv" "${specs[@]}" &
  local sampler=$!
  PIDS+=($sampler)
  local pid_args=()
  [ $# = 1 ] && pid_args=(--server-pid "$(echo "$1" | cut -d, -f2)")
  bin/edgeload --targets "$targets" --jwt-secret "$SECRET" --users "$SOAK_USERS" --senders 1.0 --rate "$rate" \
    --warmup "$SOAK_WARMUP" --duration "${minutes}m" --report-every "$SOAK_INTERVAL" --report-file "$report" \
    --json "$TMP/$run.json" "${pid_args[@]}" >"$SOAK_OUT/$run.txt" 2>"$TMP/$run.edgeload.log" &
  local load=$!
  PIDS+=($load)
  local rc=0 src=0
  wait $load || rc=$?
  kill -TERM $sampler 2>/dev/null || true
  wait $sampler || src=$?
  [ $rc = 0 ] && rc=$src
  forget $load $sampler
  cat "$SOAK_OUT/$run.txt"
  if [ -s "$SOAK_OUT/$run.csv" ]; then
    bin/soakplot -in "$SOAK_OUT/$run.csv" -out "$SOAK_OUT/$run.svg" \
      -title "edgenode soak, $title: $SOAK_USERS users, $rate sends/s offered, $minutes min, a sample every $SOAK_INTERVAL ($(date -u +%Y-%m-%d))"
  else
    echo "soak: $run produced no samples" >&2; rc=1
  fi
  if [ $rc != 0 ]; then
    FAILED=1
    echo "soak: $run failed (exit $rc); edgeload's log: $TMP/$run.edgeload.log" >&2
    tail -5 "$TMP/$run.edgeload.log" >&2 || true
  fi
  return 0
}

if [ "$SOAK_ONLY" != three ]; then
  node one 19800 eu; P=$NODE_PID
  wait_ready http://127.0.0.1:19800
  soak one-node "one node" "$SOAK_MINUTES" "$SOAK_RATE1" http://127.0.0.1:19800 "one,$P,http://127.0.0.1:19800,$TMP/one"
  stop $P
fi

if [ "$SOAK_ONLY" != one ]; then
  node n1 19810 eu; N1=$NODE_PID
  wait_ready http://127.0.0.1:19810
  node n2 19820 us 127.0.0.1:19811; N2=$NODE_PID
  node n3 19830 ap 127.0.0.1:19811; N3=$NODE_PID
  wait_ready http://127.0.0.1:19820 http://127.0.0.1:19830
  wait_balanced 127.0.0.1:19813
  T3=http://127.0.0.1:19810,http://127.0.0.1:19820,http://127.0.0.1:19830
  prefill three-nodes "$SOAK3_PREFILL" "$SOAK3_PREFILL_RATE" "$T3"
  soak three-nodes "three nodes (eu, us, ap)" "$SOAK3_MINUTES" "$SOAK_RATE3" "$T3" \
    "n1,$N1,http://127.0.0.1:19810,$TMP/n1" "n2,$N2,http://127.0.0.1:19820,$TMP/n2" "n3,$N3,http://127.0.0.1:19830,$TMP/n3"
  stop $N1 $N2 $N3
fi
[ "$FAILED" = 0 ]
