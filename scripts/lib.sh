# Shared by scripts/perf.sh and scripts/cost.sh: the server build, fresh
# nodes on loopback with the perf flags, and waits for them. Source it
# from the repository root with TMP set (a scratch directory) and PIDS an
# array; it sets SECRET, CSECRET and EDGENODE.
#
#   EDGENODE=path   another build of the server (alternating before/after
#                   runs on one box); by default the tree's, built here
#   SHARDS=N        shards of a new cluster (default: the binary's)
#   DEBUG=1         each node serves pprof on its port base + 4

SECRET=perf-jwt-secret-0123456789abcdef0123456789
CSECRET=perf-cluster-secret-0123456789abcdef012345
if [ -z "${EDGENODE:-}" ]; then
  ${GO:-go} build -tags hashicorpmetrics -o bin/edgenode ./cmd/edgenode
  EDGENODE=bin/edgenode
fi
${GO:-go} build -tags hashicorpmetrics -o bin/edgeload ./cmd/edgeload

# node NAME PORTBASE REGION [JOIN]: starts a node (HTTP on PORTBASE,
# gossip +1, cluster +2, admin +3), adds its pid to PIDS and prints it.
node() {
  local name=$1 base=$2 region=$3 join=${4:-}
  local args=(--data-dir "$TMP/$name" --http-addr 127.0.0.1:$base --gossip-addr 127.0.0.1:$((base+1))
    --cluster-addr 127.0.0.1:$((base+2)) --admin-addr 127.0.0.1:$((base+3)) --region "$region" --cluster-secret "$CSECRET" --jwt-secret "$SECRET"
    --send-rate 1000 --send-burst 1000 --log-level warn
    --max-connections-per-ip 1000000) # edgeload's thousands of sockets share loopback addresses
  [ -n "$join" ] && args+=(--join "$join")
  [ -n "${SHARDS:-}" ] && args+=(--shards "$SHARDS")
  [ -n "${DEBUG:-}" ] && args+=(--debug-addr 127.0.0.1:$((base+4)))
  "$EDGENODE" "${args[@]}" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  echo $!
}

wait_ready() { # URL...
  for u in "$@"; do
    for _ in $(seq 1 100); do curl -fs "$u/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
  done
}

# wait_balanced ADMIN_ADDR: every shard has 3 voters and leaders are spread evenly.
wait_balanced() {
  for _ in $(seq 1 90); do
    if "$EDGENODE" shards --addr "$1" --cluster-secret "$CSECRET" --json 2>/dev/null | python3 -c '
import json,sys,collections
s=json.load(sys.stdin)
c=collections.Counter(x["leader"] for x in s)
ok=all(len(x["voters"])==3 and x["leader"] for x in s) and len(c)==3 and max(c.values())-min(c.values())<=1
sys.exit(0 if ok else 1)'; then return 0; fi
    sleep 1
  done
  echo "cluster did not balance" >&2; return 1
}

# cpu_ticks PID...: user + system clock ticks of the processes.
cpu_ticks() { local t=0; for p in "$@"; do read -r -a f </proc/$p/stat; t=$((t + f[13] + f[14])); done; echo $t; }
