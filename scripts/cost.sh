#!/usr/bin/env bash
# What a message costs a three-node cluster, counted: three fresh nodes on
# loopback (16 shards, the perf.sh flags), edgeload at a fixed rate for
# 25 s, and over 15 s of it the servers' (and the load generator's) CPU, their threads' context
# switches, the host's UDP datagrams (all of loopback: the nodes' QUIC and
# gossip), and the nodes' own counters (raft entries, raft log commits,
# deliveries), each per second and per accepted send.
#
#   scripts/cost.sh [RATE]          default 1000 sends/s
#   PROFILE=1 scripts/cost.sh 100   also a 15 s CPU profile of each node
#                                   (cost-results/cpu-*.pb; go tool pprof)
#   DEVICES=2 scripts/cost.sh 500   users with two devices (a socket each)
# It also prints the node calls the nodes answered each other, by operation.
#
# Measure before/after as alternating runs (the box is noisy): build each
# binary and pass it as EDGENODE=path.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-1000}
OUT=${OUT:-cost-results}
GO=${GO:-go}
mkdir -p bin "$OUT"
TMP=$(mktemp -d /tmp/edgenode-cost.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap 'cleanup 2>/dev/null' EXIT
[ -n "${PROFILE:-}" ] && DEBUG=1
. scripts/lib.sh # node, wait_ready, wait_balanced, cpu_ticks; EDGENODE=path runs another build

node n1 19310 eu >/dev/null; wait_ready http://127.0.0.1:19310
node n2 19320 us 127.0.0.1:19311 >/dev/null; node n3 19330 ap 127.0.0.1:19311 >/dev/null
wait_ready http://127.0.0.1:19320 http://127.0.0.1:19330
wait_balanced 127.0.0.1:19313
sleep 3

ticks() { cpu_ticks "${PIDS[@]}"; }
switches() { cat /proc/{"${PIDS[0]}","${PIDS[1]}","${PIDS[2]}"}/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s }'; }
udp() { awk '/^Udp:/ { n++; if (n == 2) print $5 }' /proc/net/snmp; } # OutDatagrams
scrape() { for p in 19313 19323 19333; do curl -fs "http://127.0.0.1:$p/metrics"; done; }

T=${TARGETS:-http://127.0.0.1:19310,http://127.0.0.1:19320,http://127.0.0.1:19330}
bin/edgeload --targets $T --jwt-secret "$SECRET" --users 2000 --devices "${DEVICES:-1}" --senders 1.0 --rate "$RATE" \
  --warmup 3s --duration 25s --cpu-pids "${PIDS[0]},${PIDS[1]},${PIDS[2]}" --json "$OUT/load-$RATE.json" >"$OUT/load-$RATE.txt" 2>&1 &
L=$!
sleep 8
if [ -n "${PROFILE:-}" ]; then
  for p in 19314 19324 19334; do curl -s -o "$OUT/cpu-$p.pb" "http://127.0.0.1:$p/debug/pprof/profile?seconds=15" & done
fi
scrape >"$TMP/m0"; c0=$(ticks); s0=$(switches); u0=$(udp); g0=$(cpu_ticks $L); t0=$(date +%s.%N)
sleep 15
scrape >"$TMP/m1"; c1=$(ticks); s1=$(switches); u1=$(udp); g1=$(cpu_ticks $L); t1=$(date +%s.%N)
wait $L
sed -n '/^servers/p;/^sends/p;/send→deliver/p' "$OUT/load-$RATE.txt"
python3 - "$TMP/m0" "$TMP/m1" <<EOF
import os, sys
def load(path):
    r = {}
    for line in open(path):
        if line.startswith('#'): continue
        k, _, v = line.rpartition(' ')
        try: r[k] = r.get(k, 0) + float(v)
        except ValueError: pass
    return r
a, b = load(sys.argv[1]), load(sys.argv[2])
secs = $t1 - $t0
rate = (b.get('edgenode_sends_total{result="created"}', 0) - a.get('edgenode_sends_total{result="created"}', 0)) / secs
print("cost at %d/s offered, %.0f s window, %.0f sends/s accepted (all three nodes):" % ($RATE, secs, rate))
def row(name, per_s):
    print("  %-34s %10.0f /s  %8.2f per send" % (name, per_s, per_s / rate if rate else 0))
print("  %-34s %10.3f cores  %6.0f us per send" % ("servers' CPU", ($c1 - $c0) / os.sysconf('SC_CLK_TCK') / secs,
      ($c1 - $c0) / os.sysconf('SC_CLK_TCK') / secs / rate * 1e6 if rate else 0))
print("  %-34s %10.3f cores" % ("load generator's CPU", ($g1 - $g0) / os.sysconf('SC_CLK_TCK') / secs))
row("context switches (all threads)", ($s1 - $s0) / secs)
row("UDP datagrams sent (host)", ($u1 - $u0) / secs)
for k, name in [('edgenode_raft_batch_commands_count', 'raft entries proposed'),
                ('edgenode_raft_batch_commands_sum', 'raft commands proposed'),
                ('edgenode_raftlog_entries_total', 'raft entries written (replicas)'),
                ('edgenode_raftlog_commits_total', 'raft log commits (fsync groups)'),
                ('edgenode_deliveries_total{path="socket"}', 'events written to sockets')]:
    row(name, (b.get(k, 0) - a.get(k, 0)) / secs)
calls = {k: b[k] - a.get(k, 0) for k in b if k.startswith('edgenode_node_calls_total{')}
row("node calls answered (all ops)", sum(calls.values()) / secs)
for k, v in sorted(calls.items(), key=lambda kv: -kv[1]):
    if v > 0:
        row("  " + k.split('"')[1], v / secs)
def mean(prefix):
    s = sum(v for k, v in b.items() if k.startswith(prefix + '_sum')) - sum(v for k, v in a.items() if k.startswith(prefix + '_sum'))
    n = sum(v for k, v in b.items() if k.startswith(prefix + '_count')) - sum(v for k, v in a.items() if k.startswith(prefix + '_count'))
    return s / n * 1e3 if n else 0
print("  %-34s %10.2f ms" % ("commit to socket write (mean)", mean('edgenode_delivery_seconds')))
print("  %-34s %10.2f ms" % ("raft apply (mean)", mean('edgenode_raft_apply_seconds')))
print("  %-34s %10.2f ms" % ("POST /v1/messages (mean)", mean('edgenode_http_request_seconds_bucket{route="POST /v1/messages",le="+Inf"}'.split('_bucket')[0])))
EOF
