#!/usr/bin/env bash
# Stop the local SLURM started by start.sh: every process of every node (multi-node: slurmd,
# sshd, job steps; then the namespaces and interfaces), then slurmctld, slurmdbd, MariaDB and
# munged by the PIDs they recorded, waiting for each to exit.
#   sudo bash slurm/local-cluster/stop.sh [STATE_DIR]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=slurm/local-cluster/net.sh
. "$HERE/net.sh"
STATE=$(realpath -m "${1:-/tmp/mma-dfer-slurm}")
[ -f "$STATE/nodes" ] && net_remove_all
for f in "$STATE"/run/slurmd.pid "$STATE"/run/slurmctld.pid "$STATE"/run/slurmdbd.pid \
         "$STATE"/mysql/run/mysqld.pid "$STATE"/munge/run/munged.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
done
rm -f "$STATE"/run/slurmd-*.pid "$STATE"/run/sshd-*.pid
echo "local SLURM stopped ($STATE)"
