#!/bin/sh
# A Redis server of docker-compose.sentinel.yml. Its first start writes its config into its volume: what the main
# file's `redis` command says, the password for whichever server is primary (masterauth), a name to be found by
# after a failover, and its role ($1: empty, or "replicaof HOST PORT"). Later starts use the file as Sentinel
# left it (CONFIG REWRITE after a failover), so a restart keeps the roles of the day. Runs as `redis` when it can.
set -eu
data=${REDIS_DATA:-/data}
password=$(cat "${REDIS_PASSWORD_FILE:-/run/secrets/redis_password}")
if [ ! -s "$data/redis.conf" ]; then
  printf '%s\n' "port ${REDIS_PORT:-6379}" "dir $data" 'appendonly yes' 'appendfsync everysec' \
    "maxmemory ${REDIS_MAXMEMORY:-1gb}" 'maxmemory-policy noeviction' "replica-announce-ip $(hostname)" \
    "requirepass $password" "masterauth $password" "${1:-}" > "$data/redis.conf"
  chmod 600 "$data/redis.conf"  # it holds the password
fi
if [ "$(id -u)" = 0 ] && command -v su-exec > /dev/null; then
  chown -R redis "$data"
  exec su-exec redis redis-server "$data/redis.conf"
fi
exec redis-server "$data/redis.conf"
