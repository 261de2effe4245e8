#!/bin/sh
# Brings up docker-compose.yml's Garage cluster through Garage's admin API (its image has no
# shell, so this runs from a small curl image): connects the nodes, gives each a role
# (replication 3: all three hold every object), applies the layout, imports berth's access key
# and creates the bucket. Safe to run again: every step checks what is already there.
#
#   GARAGE_NODES="garage1:3903:3901 garage2:3903:3901 garage3:3903:3901"  (host:admin:rpc)
#   GARAGE_ADMIN_TOKEN, S3_KEY_ID, S3_SECRET, S3_BUCKET
set -eu

api() { # api HOST:PORT ENDPOINT [JSON]
  if [ $# -eq 3 ]; then
    curl -fsS -H "Authorization: Bearer $GARAGE_ADMIN_TOKEN" -H 'Content-Type: application/json' \
      -X POST -d "$3" "http://$1/v2/$2"
  else
    curl -fsS -H "Authorization: Bearer $GARAGE_ADMIN_TOKEN" "http://$1/v2/$2"
  fi
}
# The values of a JSON string field, one per line (the admin API's answers are flat enough).
field() { tr -d '\n ' | grep -o "\"$1\":\"[^\"]*\"" | sed "s/\"$1\":\"\\([^\"]*\\)\"/\\1/"; }

first=""; ids=""; peers=""
for node in $GARAGE_NODES; do
  host=${node%%:*}; rest=${node#*:}; admin="$host:${rest%%:*}"; rpc="$host:${rest#*:}"
  id=""
  for _ in $(seq 120); do
    id=$(api "$admin" GetNodeInfo?node=self 2>/dev/null | field nodeId | head -n1) && [ -n "$id" ] && break
    sleep 1
  done
  [ -n "$id" ] || { echo "garage-init: no answer from $admin" >&2; exit 1; }
  ids="$ids $id"
  if [ -z "$first" ]; then first=$admin; else peers="$peers${peers:+,}\"$id@$rpc\""; fi
done
[ -z "$peers" ] || api "$first" ConnectClusterNodes "[$peers]" >/dev/null

if [ "$(api "$first" GetClusterLayout | tr -d '\n ' | grep -o '"version":[0-9]*' | head -n1)" = '"version":0' ]; then
  roles=""
  for id in $ids; do
    roles="$roles${roles:+,}{\"id\":\"$id\",\"zone\":\"dc1\",\"capacity\":10000000000,\"tags\":[]}"
  done
  api "$first" UpdateClusterLayout "{\"roles\":[$roles]}" >/dev/null
  api "$first" ApplyClusterLayout '{"version":1}' >/dev/null
fi

api "$first" GetKeyInfo?id="$S3_KEY_ID" >/dev/null 2>&1 ||
  api "$first" ImportKey "{\"accessKeyId\":\"$S3_KEY_ID\",\"secretAccessKey\":\"$S3_SECRET\",\"name\":\"berth\"}" >/dev/null
bucket=$(api "$first" GetBucketInfo?globalAlias="$S3_BUCKET" 2>/dev/null | field id | head -n1 || true)
if [ -z "$bucket" ]; then
  bucket=$(api "$first" CreateBucket "{\"globalAlias\":\"$S3_BUCKET\"}" | field id | head -n1)
fi
api "$first" AllowBucketKey "{\"bucketId\":\"$bucket\",\"accessKeyId\":\"$S3_KEY_ID\",\"permissions\":{\"read\":true,\"write\":true,\"owner\":true}}" >/dev/null
echo "garage-init: nodes$ids; bucket $S3_BUCKET ($bucket) for key $S3_KEY_ID"
