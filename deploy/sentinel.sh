#!/bin/sh
# A Sentinel of docker-compose.sentinel.yml. Its first start writes its config into its volume: service `boxcut`
# at the Redis server named `redis` (quorum 2), reached by name, down after 5 s of silence, a failover allowed
# 60 s, and a password for the Redis servers and for itself (so nobody else can point boxcut at a Redis of theirs).
# The Sentinel rewrites the file as it learns (peers, replicas, who is primary now), and a restart reads it back.
set -eu
data=${SENTINEL_DATA:-/data}
password=$(cat "${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}")
if [ ! -s "$data/sentinel.conf" ]; then
  printf '%s\n' "port ${SENTINEL_PORT:-26379}" "dir $data" 'sentinel resolve-hostnames yes' \
    'sentinel announce-hostnames yes' "sentinel announce-ip $(hostname)" "requirepass $password" \
    "sentinel sentinel-pass $password" \
    "sentinel monitor boxcut ${SENTINEL_PRIMARY:-redis 6379} 2" "sentinel auth-pass boxcut $password" \
    'sentinel down-after-milliseconds boxcut 5000' 'sentinel failover-timeout boxcut 60000' \
    'sentinel parallel-syncs boxcut 1' > "$data/sentinel.conf"
  chmod 600 "$data/sentinel.conf"
fi
if [ "$(id -u)" = 0 ] && command -v su-exec > /dev/null; then
  chown -R redis "$data"
  exec su-exec redis redis-sentinel "$data/sentinel.conf"
fi
exec redis-server "$data/sentinel.conf" --sentinel
