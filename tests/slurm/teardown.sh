#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by tests/slurm/setup_single_node.sh, each daemon by
# its pid file (slurmd, slurmctld, slurmdbd, MariaDB, munged). Packages, configuration and the
# accounting database stay, so the next setup_single_node.sh run takes seconds.
# --purge also deletes the job state and the accounting database (a fresh cluster next time).
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "teardown: must run as root" >&2; exit 1; }

stop() { # stop NAME PIDFILE
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        echo "teardown: stopping $name ($pid)"
        kill "$pid"
        for _ in $(seq 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then
    scancel --name scopeflow-smoke 2>/dev/null || true
fi
stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop slurmdbd /run/slurm/slurmdbd.pid
if [[ ${1:-} == --purge ]] && mariadb-admin ping >/dev/null 2>&1; then
    mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db;"
    rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
    echo "teardown: purged job state and accounting database"
fi
stop mariadb /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
echo "teardown: done"
