# Sourced by scripts/test and the integration tests (tests/it/postgres.rs): install
# PostgreSQL from Debian's packages if missing, and start/stop a throwaway cluster (trust
# authentication, no fsync) on a free loopback port.
#
# initdb refuses to run as root: as root, the cluster belongs to the unprivileged
# `postgres` user the package creates; as anyone else, to the current user.
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# The newest installed server's bin directory, or nothing.
postgres_bindir() {
    local initdb
    initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1)
    [ -n "$initdb" ] && dirname "$initdb"
}

ensure_postgres() {
    if [ -z "$(postgres_bindir)" ]; then
        echo "Installing PostgreSQL (Debian's postgresql package) ..." >&2
        local sudo=
        if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
        # The package lists may be missing or stale on a fresh machine: update only then.
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql ||
            { $sudo apt-get update &&
                DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends postgresql; }
    fi
}

# Runs a command as the cluster's owner: `postgres` when root, the current user otherwise.
_as_postgres_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -s /bin/bash -c "cd / && $(printf '%q ' "$@")"
    else
        "$@"
    fi
}

# Starts a cluster in a new temp dir ($POSTGRES_DIR) and exports FLYTEINFRA_TEST_PG_URL
# (user `postgres`, no password, database `postgres`).
start_postgres() {
    local bin port
    bin=$(postgres_bindir) || true
    if [ -z "$bin" ]; then
        echo "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/test, or apt-get install postgresql" >&2
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        # Somewhere the postgres user can reach, whatever TMPDIR is.
        POSTGRES_DIR=$(mktemp -d /tmp/flyteinfra-pg.XXXXXX)
        chown postgres:postgres "$POSTGRES_DIR"
    else
        POSTGRES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/flyteinfra-pg.XXXXXX")
    fi
    port=$(free_port)
    if ! _as_postgres_owner "$bin/initdb" -D "$POSTGRES_DIR/data" -U postgres --auth=trust \
        -E UTF8 --locale=C.UTF-8 -N >"$POSTGRES_DIR/initdb.log" 2>&1; then
        cat "$POSTGRES_DIR/initdb.log" >&2
        rm -rf "$POSTGRES_DIR"
        POSTGRES_DIR=
        return 1
    fi
    if ! _as_postgres_owner "$bin/pg_ctl" -D "$POSTGRES_DIR/data" -l "$POSTGRES_DIR/log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $POSTGRES_DIR -c fsync=off" -w start >/dev/null; then
        cat "$POSTGRES_DIR/log" >&2
        rm -rf "$POSTGRES_DIR"
        POSTGRES_DIR=
        return 1
    fi
    export FLYTEINFRA_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

# Stops the cluster start_postgres started and deletes its directory.
stop_postgres() {
    local bin
    if [ -n "${POSTGRES_DIR:-}" ]; then
        bin=$(postgres_bindir) || true
        if [ -n "$bin" ]; then
            _as_postgres_owner "$bin/pg_ctl" -D "$POSTGRES_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$POSTGRES_DIR"
    fi
    POSTGRES_DIR=
    unset FLYTEINFRA_TEST_PG_URL
}
