#!/usr/bin/env bash
# Stop the local SLURM started by start.sh, by the PIDs it recorded (slurmd, slurmctld, slurmdbd,
# MariaDB, munged), waiting for each to exit.   sudo bash slurm/local-cluster/stop.sh [STATE_DIR]
set -uo pipefail
STATE=$(realpath -m "${1:-/tmp/mma-dfer-slurm}")
for p in run/slurmd.pid run/slurmctld.pid run/slurmdbd.pid mysql/run/mysqld.pid munge/run/munged.pid; do
  f=$STATE/$p
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
done
echo "local SLURM stopped ($STATE)"
