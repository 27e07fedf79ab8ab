#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests and the README's
# sweep examples: munge (authentication), MariaDB + slurmdbd (accounting:
# without it submitit waits forever on a job killed before writing its
# result), slurmctld and slurmd. Runs as root, without systemd.
#
#   bash scripts/slurm_cluster.sh start    # starts whatever is not running yet
#   bash scripts/slurm_cluster.sh stop     # stops what `start` started
#   bash scripts/slurm_cluster.sh status
#
# Install the packages first: `bash scripts/setup.sh --with-slurm`.
# Daemons are found and stopped through their pid files, never by name, so a
# real Slurm or database on the machine is left alone. Logs and state:
# $RESEARCH_SLURM_DIR (default /var/tmp/research-slurm).
set -Eeuo pipefail  # -E: the ERR trap below also fires inside functions.

STATE=${RESEARCH_SLURM_DIR:-/var/tmp/research-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# Written by scripts/slurm_cluster.sh (single-node test cluster)."
# How long a requeued job waits before it may start again (Slurm's default: 120 s).
CRED_EXPIRE=${RESEARCH_SLURM_CRED_EXPIRE:-120}
MUNGE_PID=$STATE/munge/munged.pid
MARIADB_PID=$STATE/mysql/mariadbd.pid
DB_PASS=research-slurm  # Local socket only; the database holds job accounting.

die() { echo "slurm_cluster.sh: $*" >&2; exit 1; }
# Any other failing command stops the script with its line and command, never silently.
trap 'echo "slurm_cluster.sh: line $LINENO: \`$BASH_COMMAND\` failed (exit $?); logs in $STATE." >&2' ERR

# --- Process ids ---------------------------------------------------------
# alive PIDFILE NAME: the pid file names a live process whose command is NAME
# (a stale file whose pid was reused by another program does not count).
alive() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ -r /proc/$pid/comm ]] && [[ $(</proc/"$pid"/comm) == "$2"* ]]
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  for ((i = 0; i < seconds * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${seconds}s; see the logs in $STATE."
}

stop_pid() {  # stop_pid PIDFILE NAME
  local pid
  alive "$1" "$2" || { rm -f "$1"; return 0; }
  pid=$(<"$1")
  kill -TERM "$pid"
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$1"; echo "stopped $2 ($pid)"; return 0; }
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$1"
  echo "killed $2 ($pid): it ignored SIGTERM for 30 s"
}

# --- Configuration -------------------------------------------------------
# conf_digest: a digest of the configs that exist now. Before the first start
# neither exists, and a `cat` of a missing file would fail the whole pipeline
# under pipefail (which once stopped `start` on a fresh machine without a word).
conf_digest() {
  local f
  for f in "$CONF" "$DBD_CONF"; do
    if [[ -e $f ]]; then cat "$f"; fi
  done | md5sum
}

# Refuses to overwrite a slurm.conf it did not write: that is a real cluster's.
write_conf() {  # write_conf PATH MODE < content
  if [[ -e $1 ]] && ! grep -qF "$MARK" "$1"; then
    die "$1 exists and was not written by this script: this machine has its own Slurm. " \
        "Use that cluster, or move $1 away to use the test cluster."
  fi
  local tmp
  tmp=$(mktemp)
  { echo "$MARK"; cat; } >"$tmp"
  install -m "$2" "$tmp" "$1"
  rm -f "$tmp"
}

write_configs() {
  local cpus mem
  cpus=$(nproc)
  # RealMemory in MB, a little under the total, or slurmd marks the node invalid.
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
  mkdir -p /etc/slurm "$STATE"/ctld "$STATE"/slurmd
  write_conf "$CONF" 644 <<EOF
ClusterName=research
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=$CRED_EXPIRE
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No cgroups in containers: track processes by walking /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
MailProg=/bin/true
ReturnToService=2
# Start array tasks at once instead of in scheduler passes seconds apart.
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
MinJobAge=600
# A cancelled job gets SIGKILL 5 s after SIGTERM (default 30 s; submitit ignores SIGTERM).
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  write_conf "$DBD_CONF" 600 <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
}

# --- Start ---------------------------------------------------------------
start() {
  for tool in munged mariadbd slurmdbd slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || die "$tool is not installed; run: bash scripts/setup.sh --with-slurm"
  done
  [[ $(id -u) == 0 ]] || die "run as root (the daemons start as root or as munge/mysql)."
  local before
  before=$(conf_digest)
  write_configs

  if ! alive "$MUNGE_PID" munged; then
    # munged runs as the munge user: its pid file and log go in a folder it owns.
    install -d -o munge -g munge -m 755 /run/munge "$STATE/munge"
    runuser -u munge -- munged --pid-file="$MUNGE_PID" --log-file="$STATE/munge/munged.log"
    wait_for 10 munged alive "$MUNGE_PID" munged
  fi
  wait_for 10 munge bash -c "munge -n | unmunge"

  if ! alive "$MARIADB_PID" mariadbd; then
    install -d -o mysql -g mysql /run/mysqld "$STATE/mysql"
    # setsid: the database outlives this shell (and the test session's group).
    setsid mariadbd --user=mysql --skip-networking --socket=/run/mysqld/mysqld.sock \
      --pid-file="$MARIADB_PID" >"$STATE/mysql/mariadb.log" 2>&1 </dev/null &
    wait_for 30 MariaDB mariadb -e "SELECT 1"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

  if ! alive "$STATE/slurmdbd.pid" slurmdbd; then
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  sacctmgr -n -P list cluster format=cluster | grep -qx research ||
    sacctmgr -i add cluster research >/dev/null

  if ! alive "$STATE/slurmctld.pid" slurmctld; then
    slurmctld
    wait_for 30 slurmctld scontrol ping
  fi
  if ! alive "$STATE/slurmd.pid" slurmd; then
    slurmd -N localhost
  fi
  # Running daemons read a changed slurm.conf again (slurmdbd.conf needs a stop/start).
  if [[ $(conf_digest) != "$before" ]]; then
    scontrol reconfigure
  fi
  # Up when the node takes jobs (a node left "down" by an earlier run resumes).
  scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  wait_for 30 "the node" bash -c "sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)'"
  echo "Slurm is up: $(sinfo -h -o '%P %D node(s) %c CPUs %m MB %t')"
}

# --- Stop: in reverse order, each by its pid file. ----------------------
stop() {
  stop_pid "$STATE/slurmd.pid" slurmd
  stop_pid "$STATE/slurmctld.pid" slurmctld
  stop_pid "$STATE/slurmdbd.pid" slurmdbd
  stop_pid "$MARIADB_PID" mariadbd
  stop_pid "$MUNGE_PID" munged
}

status() {
  local pair name file
  for pair in munged:$MUNGE_PID mariadbd:$MARIADB_PID slurmdbd:$STATE/slurmdbd.pid \
              slurmctld:$STATE/slurmctld.pid slurmd:$STATE/slurmd.pid; do
    name=${pair%%:*} file=${pair#*:}
    if alive "$file" "$name"; then echo "$name: running ($(<"$file"))"; else echo "$name: stopped"; fi
  done
  if alive "$STATE/slurmctld.pid" slurmctld; then sinfo; fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
