#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (Debian 12, root, no systemd) for the
# SLURM test (tests/test_slurm.py) and for trying profiles/slurm by hand:
#
#   munged -> MariaDB -> slurmdbd (job accounting, so `sacct` and the plugin's default status
#   polling work exactly as on a real site) -> slurmctld + slurmd, one node = this machine,
#   partition "debug".
#
# Idempotent: a second run finds the cluster up and exits 0 within a second or two; a run after a
# partial start (or a reboot) starts only what is missing. Every daemon is started explicitly
# (no systemd; the image's policy-rc.d stops package scripts from starting services) and is
# stopped by its pid file (tests/slurm/teardown.sh).
#
# Environment:
#   SLURM_CLUSTER_NAME   cluster name (default scopeflow)
#   SLURM_PARTITION      partition name (default debug)
#   SLURM_MEM_FRACTION   share of `slurmd -C` RealMemory given to jobs, percent (default 85)
#
# Exits non-zero with a one-line "setup_single_node: ERROR ..." when it cannot; daemon logs are in
# /var/log/slurm/.
set -euo pipefail

CLUSTER=${SLURM_CLUSTER_NAME:-scopeflow}
PARTITION=${SLURM_PARTITION:-debug}
MEM_FRACTION=${SLURM_MEM_FRACTION:-85}
LOGDIR=/var/log/slurm
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=scopeflow-ci   # local socket-only database of a throw-away CI cluster
T0=$(date +%s)

say() { echo "setup_single_node: $*"; }
die() {
    echo "setup_single_node: ERROR $*" >&2
    for f in slurmctld slurmd slurmdbd mariadb; do
        [[ -s $LOGDIR/$f.log ]] && { echo "--- tail of $LOGDIR/$f.log" >&2; tail -n 15 "$LOGDIR/$f.log" >&2; }
    done
    exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local end=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) < end)) || die "timed out after ${limit}s waiting for $what"
        sleep 0.5
    done
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_ready() {
    local state
    state=$(timeout 10 sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n 1) || return 1
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

cluster_up() {
    command -v sinfo >/dev/null 2>&1 || return 1
    timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1 || return 1
    node_ready || return 1
    timeout 10 sacct -n -X --starttime now-1hours >/dev/null 2>&1 || return 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and starts daemons)"

if cluster_up; then
    say "cluster '$(scontrol show config 2>/dev/null | awk '/^ClusterName/ {print $3}')' already up" \
        "(node $(hostname -s) $(sinfo -h -o %T | head -n 1), accounting on); nothing to do"
    exit 0
fi

# ------------------------------------------------------------------------------------- packages
PKGS=(slurm-wlm munge slurmdbd mariadb-server)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    say "installing ${missing[*]} (about a minute)"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/tmp/scopeflow-slurm-apt.log 2>&1 || die "apt-get install failed (see /tmp/scopeflow-slurm-apt.log)"
fi

# ------------------------------------------------------------------------------------- hostname
HOST=$(hostname -s)
[[ -n $HOST ]] || die "hostname -s is empty"
if ! getent hosts "$HOST" >/dev/null; then
    say "mapping $HOST to 127.0.0.1 in /etc/hosts"
    echo "127.0.0.1 $HOST" >>/etc/hosts || die "cannot map $HOST in /etc/hosts"
fi

install -d -o slurm -g slurm -m 755 /var/spool/slurmctld "$LOGDIR" /run/slurm
install -d -m 755 /var/spool/slurmd

# write_if_changed FILE MODE OWNER: stdin -> FILE; returns 0 when the content changed.
write_if_changed() {
    local file=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        chmod "$mode" "$file"; chown "$owner" "$file"
        return 1
    fi
    install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$file"
    rm -f "$tmp"
    return 0
}

stop_pidfile() {  # stop_pidfile PIDFILE: TERM the daemon, wait up to 10 s
    pid_alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
}

# ------------------------------------------------------------------------------------- slurm.conf
# (first: sacctmgr and every client read it)
CPUS=$(nproc)
REAL_MEM=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
[[ -n $REAL_MEM ]] || die "slurmd -C did not report RealMemory"
MEM=$((REAL_MEM * MEM_FRACTION / 100))
if write_if_changed /etc/slurm/slurm.conf 644 root:root <<EOF; then
# Written by scopeflow tests/slurm/setup_single_node.sh: one node (this machine), one partition.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
# finished jobs stay visible to squeue for 5 min (needed when polling with squeue instead of sacct)
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# $MEM MB = ${MEM_FRACTION} % of the $REAL_MEM MB slurmd -C reports; a job asking more waits forever
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    stop_pidfile /run/slurm/slurmd.pid
    stop_pidfile /run/slurm/slurmctld.pid
fi

# ------------------------------------------------------------------------------------- munge
[[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 600 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
if ! timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    wait_for 15 "munge credentials" bash -c 'munge -n | unmunge'
fi

# ------------------------------------------------------------------------------------- MariaDB
install -d -o mysql -g mysql -m 755 /run/mysqld
if ! mariadb-admin ping >/dev/null 2>&1; then
    say "starting MariaDB"
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null 2>&1 \
        || die "mariadb-install-db failed"
    setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
        --socket=/run/mysqld/mysqld.sock --skip-networking=0 --bind-address=127.0.0.1 \
        >"$LOGDIR/mariadb.log" 2>&1 </dev/null
    wait_for 60 "MariaDB" mariadb-admin ping
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS $DB_NAME;
            CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';" || die "cannot create the accounting database"

# ------------------------------------------------------------------------------------- slurmdbd
if write_if_changed /etc/slurm/slurmdbd.conf 600 slurm:slurm <<EOF; then stop_pidfile /run/slurm/slurmdbd.pid; fi
# Written by scopeflow tests/slurm/setup_single_node.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$LOGDIR/slurmdbd.log
PidFile=/run/slurm/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF
if ! pid_alive /run/slurm/slurmdbd.pid; then
    say "starting slurmdbd"
    /usr/sbin/slurmdbd || die "slurmdbd did not start"
    wait_for 60 "slurmdbd on port 6819" bash -c '</dev/tcp/127.0.0.1/6819'
fi
wait_for 30 "sacctmgr to answer" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
fi

# ------------------------------------------------------------------------------------- slurmctld, slurmd
if ! pid_alive /run/slurm/slurmctld.pid; then
    say "starting slurmctld"
    /usr/sbin/slurmctld || die "slurmctld did not start"
fi
wait_for 30 "slurmctld to answer" scontrol ping
if ! pid_alive /run/slurm/slurmd.pid; then
    say "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start"
fi
wait_for 60 "node $HOST to be idle in partition $PARTITION" node_ready
# a node left DOWN/DRAIN by an earlier run comes back
scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true

# ------------------------------------------------------------------------------------- smoke test
say "smoke test: sbatch --wait --wrap true"
timeout 60 sbatch --wait -p "$PARTITION" -J scopeflow-smoke -t 1 --mem=100 -o /dev/null --wrap true >/dev/null \
    || die "sbatch --wait --wrap true did not complete within 60 s"
wait_for 30 "sacct to report the smoke job" bash -c \
    "sacct -n -X -P --name scopeflow-smoke --starttime now-1hours -o State | grep -q COMPLETED"
cluster_up || die "cluster did not come up (sinfo: $(sinfo -h -o %T 2>&1 | head -n 1))"
say "cluster '$CLUSTER' up in $(($(date +%s) - T0)) s: node $HOST, CPUs=$CPUS, RealMemory=${MEM} MB," \
    "partition $PARTITION, accounting via slurmdbd"
