#!/usr/bin/env bash
# One command to a running three-region cluster on this machine:
#   deploy/compose/up.sh
# builds the image (make image) unless it exists, creates cluster.env with a
# fresh cluster secret and JWT secret unless it exists, starts the six nodes (project
# "edgenode"), waits until every shard has three voters in three regions,
# and sends a message from Alice through eu-1 that Bob reads through ap-1.
# Tear down with:
#   docker-compose -p edgenode -f deploy/compose/docker-compose.yml down -v
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
project=${COMPOSE_PROJECT_NAME:-edgenode}
export EDGENODE_IMAGE=${EDGENODE_IMAGE:-edgenode:local}

if command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then compose=(docker compose)
else echo "up.sh: needs docker-compose (apt-get install docker-compose) or the docker compose plugin" >&2; exit 1; fi
compose+=(-p "$project" -f "$here/docker-compose.yml")

if ! docker image inspect "$EDGENODE_IMAGE" >/dev/null 2>&1; then
  make -C "$root" image IMAGE="$EDGENODE_IMAGE"
fi
if [ -z "${EDGENODE_ENV_FILE:-}" ] && [ ! -f "$here/cluster.env" ]; then
  (umask 077; for v in CLUSTER_SECRET JWT_SECRET; do
     printf 'EDGENODE_%s=%s\n' "$v" "$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
   done >"$here/cluster.env")
  echo "created $here/cluster.env with a new cluster secret and JWT secret"
fi
# A container's open-file limit cannot exceed the Docker daemon's.
if [ -z "${EDGENODE_NOFILE:-}" ]; then
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ]; then export EDGENODE_NOFILE=$hard; fi
fi

"${compose[@]}" up -d

port() { # the host port of a service's client API
  "${compose[@]}" port "$1" 8080 | sed 's/.*://'
}
eu1=$(port eu-1); ap1=$(port ap-1)
echo "waiting for every shard to have a leader and three voters in three regions..."
for _ in $(seq 180); do
  # /v1/cluster/* needs the cluster secret: asked from inside the node's
  # container, whose environment has it (cluster.env).
  shards=$("${compose[@]}" exec -T eu-1 /edgenode shards --json 2>/dev/null || true)
  # ready (every shard led), and every shard's voters in the three regions (ids name them)
  if [ -n "$shards" ] && curl -sf "http://127.0.0.1:$eu1/readyz" >/dev/null \
     && [ "$(grep -o '"voters":\[[^]]*\]' <<<"$shards" | grep '"ap-' | grep '"eu-' | grep -c '"us-')" \
          = "$(grep -o '"voters"' <<<"$shards" | wc -l)" ]; then
    break
  fi
  sleep 1
done
"${compose[@]}" exec -T eu-1 /edgenode members
"${compose[@]}" exec -T eu-1 /edgenode shards

# Tokens: signed by a node's binary with the JWT secret of cluster.env,
# which every node shares, so a token made on one node works on all.
alice=$("${compose[@]}" exec -T eu-1 /edgenode token --user 1 | tr -d '\r')
bob=$("${compose[@]}" exec -T ap-1 /edgenode token --user 2 | tr -d '\r')
now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
echo
echo "Alice sends to Bob through eu-1 (http://127.0.0.1:$eu1):"
curl -sS -H "Authorization: Bearer $alice" "http://127.0.0.1:$eu1/v1/messages" \
  -d "{\"requestId\":$(date +%s),\"toUserId\":2,\"content\":\"hello from eu\",\"createdAt\":\"$now\"}"
echo
echo "Bob syncs through ap-1 (http://127.0.0.1:$ap1):"
curl -sS -H "Authorization: Bearer $bob" "http://127.0.0.1:$ap1/v1/messages"
echo
cat <<MSG

The cluster runs as project "$project". Client API ports:
$(for s in eu-1 eu-2 us-1 us-2 ap-1 ap-2; do printf '  %s  http://127.0.0.1:%s\n' "$s" "$(port $s)"; done)
Tokens:   ${compose[*]} exec eu-1 /edgenode token --user ID
Logs:     ${compose[*]} logs -f
Down:     ${compose[*]} down -v
MSG
