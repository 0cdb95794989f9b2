#!/usr/bin/env bash
# A one-node Slurm on a Debian/Ubuntu machine, for trying cluster/slurm.sbatch and for its tests:
#   sudo cluster/slurm-one-node.sh          install slurm-wlm + munge, write the config, start the daemons
#   sudo cluster/slurm-one-node.sh stop     stop the three daemons (munged, slurmctld, slurmd)
# This host is the controller and the only compute node, at 127.0.0.1 (NoCtldInAddrAny and NoInAddrAny bind
# the daemons there, not to every address: nothing listens outside the machine), with nproc CPUs and 90% of
# its memory, in one partition `debug`. No systemd needed (the daemons are started directly, so it works in
# containers); no cgroups (proctrack/linuxproc, task/none).
# Idempotent: a second run keeps the munge key, rewrites the same config, and starts only what is not running.
# KillWait=60: after `scancel`'s SIGTERM a job has a minute to stop cleanly before SIGKILL.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo > /dev/null; then exec sudo -- "$0" "$@"; fi
  echo "error: cluster/slurm-one-node.sh must run as root (no sudo here)" >&2
  exit 2
fi

CONF=/etc/slurm/slurm.conf
LOGS=/var/log/slurm

stop_daemons() {
  local name pid
  for file in /run/mtl-slurm-slurmd.pid /run/mtl-slurm-slurmctld.pid /run/munge/munged.pid; do
    pid=$(cat "$file" 2> /dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null; then kill "$pid"; fi
  done
}

if [ "${1:-}" = stop ]; then
  stop_daemons
  echo "slurm (one node) stopped"
  exit 0
fi
[ -z "${1:-}" ] || { echo "usage: $0 [stop]" >&2; exit 2; }

if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
fi

# munge: one key (the package makes one; make it if missing), owned by munge, readable by nobody else
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key 2> /dev/null \
    || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge

node=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/spool/slurmd "$LOGS"
mkdir -p /etc/slurm
cat > "$CONF.new" << EOF
# written by cluster/slurm-one-node.sh: this host is the controller and the only node
ClusterName=onenode
SlurmctldHost=$node(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/mtl-slurm-slurmctld.pid
SlurmdPidFile=/run/mtl-slurm-slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=60
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"
chmod 0644 "$CONF"

running() { local pid; pid=$(cat "/run/mtl-slurm-$1.pid" 2> /dev/null || true); [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null; }

# munged writes /run/munge/munged.pid itself (the package may have started it already)
munge -n 2> /dev/null | unmunge > /dev/null 2>&1 || runuser -u munge -- munged
munge -n | unmunge > /dev/null || { echo "error: munge does not work (see /var/log/munge/munged.log)" >&2; exit 1; }
if running slurmctld; then scontrol reconfigure; else slurmctld; fi
running slurmd || slurmd

for _ in $(seq 1 30); do  # the node registers with the controller within seconds
  state=$(sinfo -h -n "$node" -o %T 2> /dev/null || true)
  case "$state" in idle*|mixed*|allocated*) break ;; esac
  sleep 1
done
case "$state" in
  idle*|mixed*|allocated*) ;;
  *) scontrol update nodename="$node" state=resume 2> /dev/null || true ;;
esac
sinfo
echo "slurm (one node) up: $node, $cpus CPUs, ${mem} MiB; logs in $LOGS"
