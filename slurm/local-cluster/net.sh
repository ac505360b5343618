# The network of the local multi-node cluster (sourced by start.sh, stop.sh and node.sh).
#
# One Linux bridge on the host (mmadfer-br0, 10.219.0.1/24: slurmctld and slurmdbd answer there)
# and per node a network namespace mma-dfer-nodeI whose eth0 (10.219.0.(10+I)/24) is one end of
# a veth pair; the other end (mmadfer-nodeI) is a port of the bridge. Only these addresses are
# used; nothing is routed off the machine. Also made here: the nodes' /etc/hosts and the ssh
# keys and configs that a node sees (node.sh binds them over /etc inside the node).
NET_BRIDGE=mmadfer-br0
NET_PREFIX=10.219.0
NET_CTL_ADDR=$NET_PREFIX.1
NET_NS_PREFIX=mma-dfer-

net_node_addr() { echo "$NET_PREFIX.$((10 + $1))"; }
net_ns() { echo "$NET_NS_PREFIX$1"; }          # node name -> namespace name
net_veth() { echo "mmadfer-$1"; }               # node name -> host end of its veth pair

net_create() { # STATE N: bridge, namespaces, veth pairs, hosts file, ssh keys and configs
  local state=$1 n=$2 i node ns addr
  ip link add "$NET_BRIDGE" type bridge
  ip addr add "$NET_CTL_ADDR/24" dev "$NET_BRIDGE"
  ip link set "$NET_BRIDGE" up
  mkdir -p "$state/ssh"
  {
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    echo "$NET_CTL_ADDR mma-dfer-controller"
  } > "$state/etc/hosts"
  for i in $(seq "$n"); do
    node=node$i ns=$(net_ns "node$i") addr=$(net_node_addr "$i")
    ip netns add "$ns"
    ip link add "$(net_veth "$node")" type veth peer name "mmadfer-e$i"
    ip link set "$(net_veth "$node")" master "$NET_BRIDGE" up
    ip link set "mmadfer-e$i" netns "$ns"
    ip -n "$ns" link set "mmadfer-e$i" name eth0
    ip -n "$ns" addr add "$addr/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    echo "$addr $node" >> "$state/etc/hosts"
  done
  net_make_ssh "$state" "$n"
}

net_make_ssh() { # STATE N: a client key and a host key for this cluster only, and the configs
  local state=$1 n=$2 i ssh=$1/ssh
  ssh-keygen -q -t ed25519 -N '' -C mma-dfer-local-cluster -f "$ssh/id_ed25519"
  ssh-keygen -q -t ed25519 -N '' -C mma-dfer-local-cluster-host -f "$ssh/host_ed25519"
  cp "$ssh/id_ed25519.pub" "$ssh/authorized_keys"
  : > "$ssh/known_hosts"
  : > "$ssh/ssh_config"
  for i in $(seq "$n"); do
    echo "node$i,$(net_node_addr "$i") $(cut -d' ' -f1,2 "$ssh/host_ed25519.pub")" >> "$ssh/known_hosts"
    printf 'Host node%s\n  HostName %s\n' "$i" "$(net_node_addr "$i")" >> "$ssh/ssh_config"
  done
  cat >> "$ssh/ssh_config" <<CONF
Host *
  User root
  IdentityFile $ssh/id_ed25519
  UserKnownHostsFile $ssh/known_hosts
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CONF
  cat > "$ssh/sshd_config" <<CONF
Port 22
HostKey $ssh/host_ed25519
AuthorizedKeysFile $ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
Subsystem sftp internal-sftp
CONF
}

net_kill_ns() { # NAMESPACE: SIGKILL every process in it until none is left
  local ns=$1 pids
  for _ in $(seq 50); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$pids" ] && return 0
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.1
  done
  echo "net.sh: processes left in $ns: $(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')" >&2
  return 1
}

net_remove_all() { # every namespace, interface and process this network has (by name)
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NET_NS_PREFIX" || true); do
    net_kill_ns "$ns" || true
    ip netns del "$ns" 2>/dev/null || true
  done
  local link  # the bridge, and any veth end a failed start left on the host
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^mmadfer-' || true); do
    ip link del "$link" 2>/dev/null || true
  done
}
