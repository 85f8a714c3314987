# Shared by scripts/test and scripts/demo: installs system packages and runs a throwaway PostgreSQL cluster.
# Source it; it defines functions only.

# Installs the Debian packages the build and the tests need, and any named as arguments, when any is missing.
coupond_install_packages() {
    local missing=()
    for package in postgresql libpq-dev libcurl4-openssl-dev pkg-config curl tmux python3-aiosmtpd "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "Installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The folder of initdb and pg_ctl: the newest PostgreSQL under /usr/lib/postgresql.
coupond_pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$dir" ] || { echo "PostgreSQL server binaries not found under /usr/lib/postgresql" >&2; return 1; }
    echo "$dir"
}

# Starts a private cluster in a new temporary folder, listening on 127.0.0.1 and a free port, and exports
# PGHOST, PGPORT, PGUSER and PGDATABASE for it. PostgreSQL refuses to run as root, so as root it runs as the
# 'postgres' system user. COUPOND_PG_OPTIONS adds server options (for example -c shared_preload_libraries=...).
# Call coupond_pg_stop to stop it and remove the folder.
coupond_pg_start() {
    local bindir port runas=()
    bindir=$(coupond_pg_bindir)
    COUPOND_PG_DIR=$(mktemp -d /tmp/coupond-pg.XXXXXX)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$COUPOND_PG_DIR"
        runas=(runuser -u postgres --)
    fi
    "${runas[@]}" "$bindir/initdb" -D "$COUPOND_PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    "${runas[@]}" "$bindir/pg_ctl" -D "$COUPOND_PG_DIR/data" -l "$COUPOND_PG_DIR/server.log" -w \
        -o "-k $COUPOND_PG_DIR -c listen_addresses=127.0.0.1 -p $port -c max_connections=300 -c fsync=off ${COUPOND_PG_OPTIONS:-}" \
        start >/dev/null
    export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
    export COUPOND_PG_DIR COUPOND_PG_RUNAS="${runas[*]}"
    echo "PostgreSQL running on 127.0.0.1:$port (data in $COUPOND_PG_DIR)" >&2
}

coupond_pg_stop() {
    [ -n "${COUPOND_PG_DIR:-}" ] && [ -d "$COUPOND_PG_DIR" ] || return 0
    local bindir
    bindir=$(coupond_pg_bindir)
    $COUPOND_PG_RUNAS "$bindir/pg_ctl" -D "$COUPOND_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$COUPOND_PG_DIR"
}

# Stops a background process with SIGTERM, then SIGKILL if it is still there after 30 seconds.
coupond_stop_process() {
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
