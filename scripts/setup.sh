#!/usr/bin/env bash
# Installs the system packages roadie's demo and tests need, and makes sure no
# system service started by those packages holds the ports the tests use.
#
# Idempotent: when every package is already installed it does not touch apt at
# all (a second run takes well under two seconds). Runs as root, or re-runs
# itself with sudo.
#
# Why services are stopped: the tests start their own influxd / redis-server /
# postgres instances on the standard ports (the seed workflows use plain
# `influxd` and `redis-server`, which bind 8086 and 6379). A system instance
# started by a package's postinst would take those ports, and the test would
# talk to the wrong server.
set -euo pipefail

PACKAGES=(influxdb redis-server curl procps postgresql python3 python-is-python3)
# ROADIE_NETWORK=sandbox (network namespaces, veth pairs, the roadie0 bridge).
PACKAGES+=(iproute2)
# The Argo examples' images, as host programs (tests/conformance/).
PACKAGES+=(nodejs cowsay nginx jq busybox ncat)
# service name (as /etc/init.d/NAME) -> system user it runs as
SERVICES=(influxdb redis-server postgresql nginx)
SERVICE_USERS=(influxdb redis postgres www-data)
# port -> what normally listens there
PORTS=(8086 6379 5432 80)
PORT_OWNERS=(influxd redis-server postgres nginx)

step() { printf 'setup: %s\n' "$*"; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        step "not root: re-running with sudo"
        exec sudo -E bash "$0" "$@"
    fi
    die "must run as root (or with sudo available); current uid is $(id -u)"
fi

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian/Ubuntu only"

# --- 1. which packages are missing -----------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ $status != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

# --- 2. install them, with service auto-start blocked ----------------------
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
POLICY_CREATED=0
restore_policy() {
    if [[ -n $POLICY_BACKUP ]]; then
        mv -f "$POLICY_BACKUP" "$POLICY"
    elif [[ $POLICY_CREATED -eq 1 ]]; then
        rm -f "$POLICY"
    fi
}

if [[ ${#missing[@]} -eq 0 ]]; then
    step "packages already installed: ${PACKAGES[*]}"
else
    step "missing packages: ${missing[*]}"
    # policy-rc.d exiting 101 tells invoke-rc.d (used by every postinst) not to
    # start services. Keep an existing one that already says 101; otherwise put
    # ours in place for the install only and restore the original afterwards.
    if [[ -f $POLICY ]] && grep -qx 'exit 101' "$POLICY"; then
        step "service auto-start already blocked by $POLICY"
    else
        if [[ -e $POLICY ]]; then
            POLICY_BACKUP=$(mktemp "${POLICY}.roadie-backup.XXXXXX")
            cp -p "$POLICY" "$POLICY_BACKUP"
        else
            POLICY_CREATED=1
        fi
        trap restore_policy EXIT
        printf '#!/bin/sh\n# written by roadie scripts/setup.sh: no service auto-start while installing\nexit 101\n' >"$POLICY"
        chmod 755 "$POLICY"
        step "blocked service auto-start with $POLICY (exit 101) for the install"
    fi

    step "apt-get update"
    if ! apt-get update -qq >/tmp/roadie-setup-apt-update.log 2>&1; then
        cat /tmp/roadie-setup-apt-update.log >&2
        die "apt-get update failed (log above)"
    fi

    step "apt-get install ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/tmp/roadie-setup-apt-install.log 2>&1; then
        tail -n 40 /tmp/roadie-setup-apt-install.log >&2
        die "apt-get install ${missing[*]} failed (last lines of /tmp/roadie-setup-apt-install.log above)"
    fi
    restore_policy
    trap - EXIT
    POLICY_BACKUP=""
    POLICY_CREATED=0
fi

# argosay (Argo's test image, as a script) and cowsay (in /usr/games, off
# root's PATH) where the examples' steps look for them. /argosay is the
# image's entrypoint path, which some examples name in `command`.
repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Copies, not links: a link into one checkout breaks when that checkout goes.
rm -f /usr/local/bin/argosay /argosay
install -m 0755 "$repo_dir/scripts/argosay" /usr/local/bin/argosay
install -m 0755 "$repo_dir/scripts/argosay" /argosay
[[ -x /usr/games/cowsay ]] && ln -sfn /usr/games/cowsay /usr/local/bin/cowsay

for bin in influxd redis-server curl pgrep node cowsay nginx jq argosay busybox ncat; do
    command -v "$bin" >/dev/null 2>&1 || die "$bin not on PATH after install"
done

# --- 3. stop and disable the system services -------------------------------
for i in "${!SERVICES[@]}"; do
    svc=${SERVICES[$i]}
    user=${SERVICE_USERS[$i]}
    if [[ -x /etc/init.d/$svc ]]; then
        # Not started at boot either (sysv links; systemd when it is PID 1).
        update-rc.d "$svc" disable >/dev/null 2>&1 || true
        if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    fi
    # Processes run by the service's own system user are the system instance;
    # the tests' instances run as the test's user (root in CI), never as these.
    if id -u "$user" >/dev/null 2>&1 && pgrep -u "$user" >/dev/null 2>&1; then
        step "stopping system service $svc"
        service "$svc" stop >/dev/null 2>&1 || true
        for _ in $(seq 1 50); do
            pgrep -u "$user" >/dev/null 2>&1 || break
            sleep 0.1
        done
        if pgrep -u "$user" >/dev/null 2>&1; then
            pkill -TERM -u "$user" || true
            sleep 1
            pkill -KILL -u "$user" || true
        fi
        pgrep -u "$user" >/dev/null 2>&1 && die "could not stop the processes of user $user ($svc)"
    fi
    step "system service $svc: stopped and disabled"
done

# --- Python: Hera, the Argo SDK the seed daemon-step-hera.py is written with --
if python3 -c 'import hera' >/dev/null 2>&1; then
    step "Python package hera: present"
else
    step "installing Python package hera (pip)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore hera \
        || die "pip could not install hera (the Hera seed test needs it)"
fi

# --- 4. the test ports must be free ----------------------------------------
# /proc/net/tcp{,6}: local address is field 2 (hex ip:port), state 0A = LISTEN.
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
busy=0
for i in "${!PORTS[@]}"; do
    port=${PORTS[$i]}
    if port_listening "$port"; then
        busy=1
        printf 'setup: WARNING: port %s is in use (usually %s): tests that start their own %s will fail while it is\n' \
            "$port" "${PORT_OWNERS[$i]}" "${PORT_OWNERS[$i]}" >&2
    fi
done
if [[ $busy -eq 0 ]]; then
    step "ports ${PORTS[*]} are free"
fi
step "done"
