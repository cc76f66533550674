#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster on this machine (Debian 12, root, no systemd) for
# tests/test_slurm.py and for trying profiles/slurm by hand:
#
#   munged -> MariaDB -> slurmdbd (job accounting, so `sacct` and the executor plugin's default
#   status polling work as on a real site) -> slurmctld + slurmd; one node (this machine, all its
#   CPUs, 85 % of its memory), one partition "debug".
#
# Idempotent: when the cluster is already up with this configuration, it says so and exits 0 in
# well under a second; after a partial start (or a reboot of the container) it starts only what is
# missing; a changed configuration restarts the daemons that read it. Every daemon is started
# explicitly (no systemd; the image's policy-rc.d keeps package scripts from starting services)
# and can be stopped by its pid file (tests/slurm/teardown.sh).
#
# Environment:
#   SLURM_CLUSTER_NAME   cluster name (default scopeflow)
#   SLURM_PARTITION      partition name (default debug)
#   SLURM_MEM_PERCENT    share of the RealMemory `slurmd -C` reports that jobs may use (default 85)
#
# On failure: exit 1 with one line "setup_single_node: ERROR ..." and the tails of the daemon logs
# (all under /var/log/slurm/).
set -euo pipefail

CLUSTER=${SLURM_CLUSTER_NAME:-scopeflow}
PARTITION=${SLURM_PARTITION:-debug}
MEM_PERCENT=${SLURM_MEM_PERCENT:-85}
LOGDIR=/var/log/slurm
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=scopeflow-ci # socket-only database of a throw-away test cluster
PKGS=(slurm-wlm munge slurmdbd mariadb-server)
T0=$(date +%s)

say() { echo "setup_single_node: $*"; }
die() {
    echo "setup_single_node: ERROR $*" >&2
    for f in slurmctld slurmd slurmdbd mariadb; do
        if [[ -s $LOGDIR/$f.log && -r $LOGDIR/$f.log ]]; then
            echo "--- tail of $LOGDIR/$f.log" >&2
            tail -n 15 "$LOGDIR/$f.log" >&2
        fi
    done
    exit 1
}

# wait_for SECONDS DESCRIPTION COMMAND...: retry COMMAND every 0.5 s until it succeeds.
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

stop_pidfile() { # TERM the daemon of a pid file, KILL after 10 s
    pid_alive "$1" || return 0
    local pid
    pid=$(cat "$1")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
}

munge_ok() { timeout 5 munge -n 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; }

node_ready() {
    local state
    state=$(timeout 10 sinfo -h -p "$PARTITION" -o %T 2>/dev/null | head -n 1) || return 1
    [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

accounting_ok() { timeout 10 sacct -n -X --starttime now-1hours >/dev/null 2>&1; }

packages_missing() {
    local p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

render_slurm_conf() {
    local real_mem mem
    real_mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
    [[ -n $real_mem ]] || die "slurmd -C did not report RealMemory"
    mem=$((real_mem * MEM_PERCENT / 100))
    cat <<EOF
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
# finished jobs stay visible to squeue for 5 min (needed only when polling with squeue, not sacct)
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
# keep the plugin's --comment (rule_<name>_wildcards_...) so sacct shows which rule a job ran
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
# RealMemory = ${MEM_PERCENT} % of the $real_mem MB slurmd -C reports; a job asking more pends forever
NodeName=$HOST CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

render_slurmdbd_conf() {
    cat <<EOF
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
}

# install_if_changed FILE MODE OWNER:GROUP CONTENT: returns 0 when FILE was (re)written.
install_if_changed() {
    local file=$1 mode=$2 owner=$3 content=$4 tmp
    if [[ -f $file ]] && [[ $(<"$file") == "$content" ]]; then
        chmod "$mode" "$file"
        chown "$owner" "$file"
        return 1
    fi
    tmp=$(mktemp)
    printf '%s\n' "$content" >"$tmp"
    install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$file"
    rm -f "$tmp"
    return 0
}

if [[ $(id -u) -ne 0 ]]; then
    echo "setup_single_node: ERROR must run as root (it installs packages and starts daemons)" >&2
    exit 1
fi
HOST=$(hostname -s)
[[ -n $HOST ]] || die "hostname -s is empty"

# ------------------------------------------------------------------- already up? (second run)
if [[ -z $(packages_missing) ]] && [[ -f /etc/slurm/slurm.conf ]] &&
    [[ $(</etc/slurm/slurm.conf) == "$(render_slurm_conf)" ]] &&
    munge_ok && node_ready && accounting_ok; then
    say "cluster '$CLUSTER' already up (node $HOST $(sinfo -h -o %T | head -n 1), accounting on); nothing to do"
    exit 0
fi

# ------------------------------------------------------------------- packages
mapfile -t missing < <(packages_missing)
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
    say "installing ${missing[*]} (about a minute)"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        >/tmp/scopeflow-slurm-apt.log 2>&1 || die "apt-get install failed (see /tmp/scopeflow-slurm-apt.log)"
fi

# ------------------------------------------------------------------- hostname, folders, configs
if ! getent hosts "$HOST" >/dev/null; then
    say "mapping $HOST to 127.0.0.1 in /etc/hosts"
    echo "127.0.0.1 $HOST" >>/etc/hosts || die "cannot map $HOST in /etc/hosts"
fi
install -d -o slurm -g slurm -m 755 /var/spool/slurmctld "$LOGDIR" /run/slurm
install -d -m 755 /var/spool/slurmd /etc/slurm

# slurm.conf first: every client (sacctmgr included) reads it.
if install_if_changed /etc/slurm/slurm.conf 644 root:root "$(render_slurm_conf)"; then
    say "wrote /etc/slurm/slurm.conf"
    stop_pidfile /run/slurm/slurmd.pid
    stop_pidfile /run/slurm/slurmctld.pid
fi
if install_if_changed /etc/slurm/slurmdbd.conf 600 slurm:slurm "$(render_slurmdbd_conf)"; then
    say "wrote /etc/slurm/slurmdbd.conf"
    stop_pidfile /run/slurm/slurmdbd.pid
fi

# ------------------------------------------------------------------- munge
[[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 600 /etc/munge/munge.key
install -d -o munge -g munge -m 755 /run/munge
if ! munge_ok; then
    say "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    wait_for 15 "munge credentials" munge_ok
fi

# ------------------------------------------------------------------- MariaDB + accounting database
install -d -o mysql -g mysql -m 755 /run/mysqld
if ! mariadb-admin ping >/dev/null 2>&1; then
    say "starting MariaDB"
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null 2>&1 ||
        die "mariadb-install-db failed"
    setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
        --socket=/run/mysqld/mysqld.sock --bind-address=127.0.0.1 \
        >"$LOGDIR/mariadb.log" 2>&1 </dev/null
    wait_for 60 "MariaDB" mariadb-admin ping
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS $DB_NAME;
            CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
            GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';" ||
    die "cannot create the accounting database"

# ------------------------------------------------------------------- slurmdbd + cluster record
if ! pid_alive /run/slurm/slurmdbd.pid; then
    say "starting slurmdbd"
    /usr/sbin/slurmdbd || die "slurmdbd did not start"
    wait_for 60 "slurmdbd on port 6819" bash -c '</dev/tcp/127.0.0.1/6819'
fi
wait_for 30 "sacctmgr to answer" sacctmgr -n list cluster
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
fi

# ------------------------------------------------------------------- slurmctld, slurmd
if ! pid_alive /run/slurm/slurmctld.pid; then
    say "starting slurmctld"
    /usr/sbin/slurmctld || die "slurmctld did not start"
fi
wait_for 30 "slurmctld to answer" scontrol ping
if ! pid_alive /run/slurm/slurmd.pid; then
    say "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start"
fi
# a node left DOWN/DRAIN by an earlier run comes back
if timeout 10 sinfo -h -o %T | grep -Eq 'down|drain|fail'; then
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
fi
wait_for 60 "node $HOST to be idle in partition $PARTITION" node_ready

# ------------------------------------------------------------------- smoke test
say "smoke test: sbatch --wait --wrap true"
timeout 60 sbatch --wait -p "$PARTITION" -J scopeflow-smoke -t 1 --mem=100 -o /dev/null --wrap true \
    >/dev/null || die "sbatch --wait --wrap true did not complete within 60 s"
wait_for 30 "sacct to list the smoke job as COMPLETED" bash -c \
    "sacct -n -X -P --name scopeflow-smoke --starttime now-1hours -o State | grep -q COMPLETED"
say "cluster '$CLUSTER' up in $(($(date +%s) - T0)) s: node $HOST ($(nproc) CPUs," \
    "$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' /etc/slurm/slurm.conf) MB), partition $PARTITION," \
    "accounting via slurmdbd"
