#!/usr/bin/env bash
# A single-node Slurm cluster on this host, for the lab's tests: munged, slurmctld and slurmd,
# every file (key, state, logs, sockets, slurm.conf) in one folder, nothing in /etc.
#
#   tests/slurm/cluster.sh start DIR [task/none|task/cgroup]   prints `export SLURM_CONF=...`
#   tests/slurm/cluster.sh stop DIR
#
# Slurm's commands (sbatch, squeue, scancel) find this cluster through SLURM_CONF; the job
# environment inherits it. Needs slurm-wlm and munge (tests/install-deps.sh). Runs as root
# (SlurmUser=root), as CI does.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR [task plugin]}
dir=$(realpath -m "${2:?usage: cluster.sh start|stop DIR}")
task=${3:-task/none}

stop() {
  for d in slurmd slurmctld munged; do
    if [ -s "$dir/$d.pid" ]; then
      pid=$(cat "$dir/$d.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/$d.pid"
    fi
  done
}

case "$cmd" in
stop) stop; exit 0 ;;
start) ;;
*) echo "cluster.sh: unknown command $cmd (start or stop)" >&2; exit 2 ;;
esac

for tool in munged slurmctld slurmd sbatch; do
  command -v "$tool" >/dev/null || { echo "cluster.sh: $tool not found (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
mkdir -p "$dir"/{state,spool,munge}
chmod 700 "$dir/munge"
host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
# Free ports for slurmctld and slurmd, chosen by the kernel.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

[ -s "$dir/munge/munge.key" ] || { dd if=/dev/urandom bs=1 count=1024 status=none > "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"; }
munged --force --key-file "$dir/munge/munge.key" --socket "$dir/munge/munge.sock" \
  --pid-file "$dir/munged.pid" --log-file "$dir/munged.log" --seed-file "$dir/munge/munged.seed"

proctrack=proctrack/linuxproc
[ "$task" = task/cgroup ] && proctrack=proctrack/cgroup
cat > "$dir/slurm.conf" <<CONF
ClusterName=testbed-lab
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=$proctrack
TaskPlugin=$task
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=lab Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$dir/cgroup.conf" <<CONF
CgroupPlugin=autodetect
ConstrainCores=no
ConstrainRAMSpace=no
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf"
# Up when the node takes jobs.
for _ in $(seq 150); do
  if sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
    echo "export SLURM_CONF=$dir/slurm.conf"
    exit 0
  fi
  sleep 0.2
done
echo "cluster.sh: the node did not come up in 30 s; see $dir/slurmctld.log and $dir/slurmd.log" >&2
sinfo >&2 || true
stop
exit 1
