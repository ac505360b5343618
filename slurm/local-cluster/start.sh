#!/usr/bin/env bash
# Start a real single-node SLURM (slurmctld + slurmd) with accounting (slurmdbd + MariaDB) on
# this machine, as plain background daemons (no systemd), all state under one folder.
#
#   sudo bash slurm/local-cluster/start.sh [STATE_DIR]     # default /tmp/mma-dfer-slurm
#   source STATE_DIR/env.sh                                # SLURM_CONF for sbatch/squeue/sacct
#   sudo bash slurm/local-cluster/stop.sh [STATE_DIR]
#
# Installs Debian's munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server when
# missing (root; ~25 s). The node is called "localhost" whatever the hostname; partitions
# "debug" (default) and "urgent" (a higher tier that preempts debug by requeue). No GPUs (gres)
# are configured: GPU requests are rejected at submit time.
set -euo pipefail
STATE=$(realpath -m "${1:-/tmp/mma-dfer-slurm}")
[ "$(id -u)" = 0 ] || { echo "start.sh: run as root" >&2; exit 1; }

need=()
for b in munged slurmctld slurmd sbatch slurmdbd mariadbd; do command -v "$b" >/dev/null || need+=("$b"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing SLURM, munge and MariaDB (missing: ${need[*]})"
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

if [ -f "$STATE/run/slurmctld.pid" ] && kill -0 "$(cat "$STATE/run/slurmctld.pid")" 2>/dev/null; then
  echo "already running (state $STATE)"; exit 0
fi
rm -rf "$STATE"
mkdir -p "$STATE"; chmod 755 "$STATE"
mkdir -p "$STATE"/{etc,state/ctld,state/d,log,run} "$STATE"/munge/{etc,lib,log,run} "$STATE"/mysql/{data,run}
export SLURM_CONF=$STATE/etc/slurm.conf
MS=$STATE/munge/run/munge.socket.2
wait_for() { # seconds, command...
  local t=$1; shift
  for _ in $(seq $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "start.sh: timed out waiting for: $*" >&2; return 1
}

# munge
chown -R munge:munge "$STATE/munge"; chmod 755 "$STATE/munge" "$STATE/munge/run"
chmod 700 "$STATE"/munge/{etc,lib,log}
runuser -u munge -- mungekey --create --keyfile="$STATE/munge/etc/munge.key"
chmod 400 "$STATE/munge/etc/munge.key"
runuser -u munge -- munged --key-file="$STATE/munge/etc/munge.key" --socket="$MS" \
  --pid-file="$STATE/munge/run/munged.pid" --log-file="$STATE/munge/log/munged.log" --seed-file="$STATE/munge/lib/munged.seed"
wait_for 10 bash -c "munge -S '$MS' -n | unmunge -S '$MS'"

# MariaDB for slurmdbd
chown -R mysql:mysql "$STATE/mysql"
mariadb-install-db --user=mysql --datadir="$STATE/mysql/data" --auth-root-authentication-method=socket \
  --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
(runuser -u mysql -- mariadbd --no-defaults --datadir="$STATE/mysql/data" --socket="$STATE/mysql/run/mysqld.sock" \
  --pid-file="$STATE/mysql/run/mysqld.pid" --bind-address=127.0.0.1 --port=3306 \
  --log-error="$STATE/log/mariadb.log" >/dev/null 2>&1 &)
wait_for 30 mariadb --socket="$STATE/mysql/run/mysqld.sock" -uroot -e "SELECT 1"
mariadb --socket="$STATE/mysql/run/mysqld.sock" -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) * 8 / 10 ))
cat > "$STATE/etc/slurm.conf" <<CONF
ClusterName=localci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MS
StateSaveLocation=$STATE/state/ctld
SlurmdSpoolDir=$STATE/state/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoragePass=$MS
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
EnforcePartLimits=ALL
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=3600
Waittime=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=localhost Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
CONF
cat > "$STATE/etc/slurmdbd.conf" <<CONF
AuthType=auth/munge
AuthInfo=socket=$MS
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
chmod 600 "$STATE/etc/slurmdbd.conf"

slurmdbd
wait_for 30 sacctmgr -n list cluster
sacctmgr -i add cluster localci >/dev/null 2>&1 || true
slurmctld
slurmd -N localhost
wait_for 60 bash -c "sinfo -h -o %T -n localhost | grep -qx idle"
cat > "$STATE/env.sh" <<ENV
export SLURM_CONF=$STATE/etc/slurm.conf
ENV
echo "local SLURM is up: state in $STATE; run: source $STATE/env.sh"
