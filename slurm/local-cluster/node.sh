#!/usr/bin/env bash
# One node of the local multi-node cluster (start.sh --nodes N, N > 1):
#
#   sudo bash slurm/local-cluster/node.sh [--state STATE_DIR] start NODE   # boot it: slurmd (+ sshd)
#   sudo bash slurm/local-cluster/node.sh [--state STATE_DIR] kill NODE    # lose it, as a power cut would
#   sudo bash slurm/local-cluster/node.sh [--state STATE_DIR] exec NODE CMD [ARG...]   # run CMD on it
#
# STATE_DIR defaults to $MMA_DFER_SLURM_STATE (set by STATE_DIR/env.sh), else /tmp/mma-dfer-slurm.
# A node is a network namespace (made by start.sh) plus, per boot, a UTS namespace (hostname
# NODE) and a mount namespace in which /etc/hosts names every node and /etc/ssh/ssh_config
# holds the cluster's ssh key. `kill` first takes the node's link down (its peers get no reset,
# only silence) and then SIGKILLs every process in it: slurmd, sshd, slurmstepd and the job's
# own processes. `start` brings the link up and boots the daemons again; with ReturnToService=2
# SLURM puts the node back into service when its slurmd registers.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=slurm/local-cluster/net.sh
. "$HERE/net.sh"
STATE=${MMA_DFER_SLURM_STATE:-/tmp/mma-dfer-slurm}
if [ "${1:-}" = --state ]; then STATE=$2; shift 2; fi
usage="usage: node.sh [--state STATE_DIR] start|kill|exec NODE [CMD...]"
[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
action=$1 node=$2
shift 2
STATE=$(realpath -m "$STATE")
[ -f "$STATE/nodes" ] && grep -qx "$node" "$STATE/nodes" \
  || { echo "node.sh: no node '$node' in the multi-node cluster at $STATE (start.sh --nodes N)" >&2; exit 2; }
ns=$(net_ns "$node")
slurmd_pid=$STATE/run/slurmd-$node.pid
sshd_pid=$STATE/run/sshd-$node.pid
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

case $action in
  start)
    if alive "$slurmd_pid"; then echo "node.sh: $node is already up" >&2; exit 1; fi
    net_kill_ns "$ns"  # whatever survived a partial kill
    rm -f "$slurmd_pid" "$sshd_pid"
    ip link set "$(net_veth "$node")" up
    i=${node#node}
    sshd=""
    [ -x /usr/sbin/sshd ] && [ -f "$STATE/ssh/sshd_config" ] && sshd=/usr/sbin/sshd
    # A fresh UTS and mount namespace per boot, inside the node's network namespace. nsenter
    # (not `ip netns exec`, which remounts /sys and hides the cgroup mounts slurmd needs).
    nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private \
      env STATE="$STATE" NODE="$node" ADDR="$(net_node_addr "$i")" SSHD="$sshd" SLURM_CONF="$STATE/etc/slurm.conf" \
      bash -euc '
        hostname "$NODE"
        mount --bind "$STATE/etc/hosts" /etc/hosts
        if [ -n "$SSHD" ]; then
          [ -f /etc/ssh/ssh_config ] && mount --bind "$STATE/ssh/ssh_config" /etc/ssh/ssh_config
          mkdir -p /run/sshd
          "$SSHD" -f "$STATE/ssh/sshd_config" -o "ListenAddress=$ADDR" -o "PidFile=$STATE/run/sshd-$NODE.pid" \
            -E "$STATE/log/sshd-$NODE.log"
        fi
        slurmd -N "$NODE"'
    echo "$node started"
    ;;
  kill)
    ip link set "$(net_veth "$node")" down
    net_kill_ns "$ns"
    rm -f "$slurmd_pid" "$sshd_pid"
    echo "$node killed at $(date +%s.%N)"
    ;;
  exec)
    [ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
    pidfile=$slurmd_pid
    alive "$pidfile" || pidfile=$sshd_pid
    alive "$pidfile" || { echo "node.sh: $node is down" >&2; exit 1; }
    exec nsenter -t "$(cat "$pidfile")" --net --uts --mount --wd="$PWD" -- "$@"
    ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
