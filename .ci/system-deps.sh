#!/usr/bin/env bash
# System packages the test-suite needs beyond Python: a real SLURM with accounting (tests/test_slurm.py
# and tests/test_multinode.py start it with slurm/local-cluster/start.sh), for its multi-node form
# sshd, pdsh (deepspeed --hostfile) and iproute2 (network namespaces), and headless Chromium with
# the DejaVu fonts for the screenshot tests of the report and TensorBoard (tests/test_sweep.py).
# Network is used here only.
set -euo pipefail
pkgs=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server openssh-server pdsh iproute2
      chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ "$created" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
echo "system packages ready: ${pkgs[*]}"
