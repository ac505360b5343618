#!/usr/bin/env bash
# Start a real SLURM (slurmctld + slurmd) with accounting (slurmdbd + MariaDB) on this machine, as
# plain background daemons (no systemd), all state under one folder.
#
#   sudo bash slurm/local-cluster/start.sh [STATE_DIR] [--nodes N]   # default /tmp/mma-dfer-slurm, N=1
#   source STATE_DIR/env.sh                                          # SLURM_CONF for sbatch/squeue/sacct
#   sudo bash slurm/local-cluster/stop.sh [STATE_DIR]
#
# Installs Debian's munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server when
# missing (root; ~25 s), and openssh-server and pdsh for N > 1. Partitions "debug" (default) and
# "urgent" (a higher tier that preempts debug by requeue). No GPUs (gres) are configured: GPU
# requests are rejected at submit time. Prints the node names once every node is idle.
#
# N = 1: one node called "localhost" whatever the hostname, slurmd on the host.
# N > 1: nodes node1..nodeN, each a slurmd (and an sshd) in its own network, UTS and mount
# namespace: hostname nodeI, address 10.219.0.(10+I) on eth0, a veth pair into the bridge
# mmadfer-br0 (10.219.0.1, where slurmctld and slurmdbd answer); inside a node /etc/hosts names
# every node and /etc/ssh/ssh_config holds a key made for this cluster, so `ssh node2` works from
# any node, as on a real cluster. `node.sh` kills a node (a power loss) and starts it again, and
# runs a command on a node. SlurmdTimeout is short and requeued jobs wait 10 s, so a lost node is
# noticed and its jobs restart in seconds (see docs/cluster.md, "Several nodes on one machine").
set -Eeuo pipefail  # -E: the ERR trap below also fires inside functions
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=/tmp/mma-dfer-slurm
NODES=1
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) NODES=${2:-}; shift 2 ;;
    --nodes=*) NODES=${1#--nodes=}; shift ;;
    -*) echo "start.sh: unknown option $1 (usage: start.sh [STATE_DIR] [--nodes N])" >&2; exit 2 ;;
    *) STATE=$1; shift ;;
  esac
done
[[ $NODES =~ ^[1-9][0-9]?$ ]] || { echo "start.sh: --nodes must be a number from 1 to 99, got '$NODES'" >&2; exit 2; }
STATE=$(realpath -m "$STATE")
[ "$(id -u)" = 0 ] || { echo "start.sh: run as root" >&2; exit 1; }
# shellcheck source=slurm/local-cluster/net.sh
. "$HERE/net.sh"

need=()
for b in munged slurmctld slurmd sbatch slurmdbd mariadbd; do command -v "$b" >/dev/null || need+=("$b"); done
pkgs=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
if [ "$NODES" -gt 1 ]; then
  for b in /usr/sbin/sshd pdsh ip nsenter; do command -v "$b" >/dev/null || need+=("$b"); done
  pkgs+=(openssh-server pdsh iproute2)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing SLURM, munge and MariaDB (missing: ${need[*]})"
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created_policy=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

if [ -f "$STATE/run/slurmctld.pid" ] && kill -0 "$(cat "$STATE/run/slurmctld.pid")" 2>/dev/null; then
  echo "already running (state $STATE)"; exit 0
fi
# A half-started cluster is taken down again: no daemon, namespace or interface is left behind.
trap 'echo "start.sh: failed; stopping what was started" >&2; bash "$HERE/stop.sh" "$STATE" >&2' ERR
[ "$NODES" -gt 1 ] && net_remove_all  # leftovers of a cluster whose state folder is gone
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
if [ "$NODES" = 1 ]; then
  CTL=localhost
  AUTHINFO="socket=$MS"
  DAEMON_FILES="SlurmdSpoolDir=$STATE/state/d
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmdLogFile=$STATE/log/slurmd.log"
  TIMEOUTS="SlurmdTimeout=30"
  NODE_LINES="NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=$MEM State=UNKNOWN"
  PART_NODES=localhost
  NAMES=(localhost)
else
  # The machine's cores and memory are shared out: the nodes together claim what one node would.
  per_cpus=$(( CPUS / NODES > 0 ? CPUS / NODES : 1 ))
  per_mem=$(( MEM / NODES ))
  CTL="localhost($NET_CTL_ADDR)"
  # cred_expire: how long a requeued job is held before it may start again (default 120 s).
  AUTHINFO="socket=$MS,cred_expire=10"
  # %n: one spool folder, pid file and log per node (several slurmd on one machine)
  DAEMON_FILES="SlurmdSpoolDir=$STATE/state/d/%n
SlurmdPidFile=$STATE/run/slurmd-%n.pid
SlurmdLogFile=$STATE/log/slurmd-%n.log"
  # A node that stops answering is DOWN after ~SlurmdTimeout (+ a ping interval) and its jobs requeued.
  # A pending job is looked at every 5 s (default 60 s), so a requeued job starts once it may.
  TIMEOUTS="SlurmdTimeout=10
MessageTimeout=5
JobRequeue=1
SchedulerParameters=sched_interval=5,bf_interval=5"
  NODE_LINES=""
  NAMES=()
  for i in $(seq "$NODES"); do
    NAMES+=("node$i")
    NODE_LINES+="NodeName=node$i NodeAddr=$(net_node_addr "$i") NodeHostname=node$i CPUs=$per_cpus Sockets=1 CoresPerSocket=$per_cpus ThreadsPerCore=1 RealMemory=$per_mem State=UNKNOWN
"
  done
  PART_NODES="node[1-$NODES]"
  printf '%s\n' "${NAMES[@]}" > "$STATE/nodes"
  net_create "$STATE" "$NODES"
fi
cat > "$STATE/etc/slurm.conf" <<CONF
ClusterName=localci
SlurmctldHost=$CTL
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=$AUTHINFO
StateSaveLocation=$STATE/state/ctld
$DAEMON_FILES
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
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
$TIMEOUTS
InactiveLimit=0
KillWait=10
MinJobAge=3600
Waittime=0
${NODE_LINES%$'\n'}
PartitionName=debug Nodes=$PART_NODES Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$PART_NODES Default=NO MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
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
cat > "$STATE/env.sh" <<ENV
export SLURM_CONF=$STATE/etc/slurm.conf
export MMA_DFER_SLURM_STATE=$STATE
ENV

slurmdbd
wait_for 30 sacctmgr -n list cluster
sacctmgr -i add cluster localci >/dev/null 2>&1 || true
slurmctld
if [ "$NODES" = 1 ]; then
  slurmd -N localhost
else
  for n in "${NAMES[@]}"; do bash "$HERE/node.sh" --state "$STATE" start "$n"; done
fi
all_idle() { [ "$(sinfo -h -N -o '%N %T' | awk '$2 == "idle"' | sort -u | wc -l)" = "$NODES" ]; }
wait_for 90 all_idle
trap - ERR
echo "nodes: ${NAMES[*]}"
echo "local SLURM is up: state in $STATE; run: source $STATE/env.sh"
