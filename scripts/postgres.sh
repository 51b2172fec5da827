# Sourced by scripts/test and the integration tests (tests/it/postgres.rs): install
# PostgreSQL from Debian's packages if missing, and start/stop a throwaway cluster (trust
# authentication, no fsync) on a free loopback port; start_postgres_tls starts one that
# takes TCP logins only over TLS and with a password (tests/it/postgres_tls.rs).
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

# Starts a second cluster in a new temp dir ($POSTGRES_TLS_DIR) that takes TCP logins only
# over TLS and only with a SCRAM-SHA-256 password (no pg_hba.conf entry for plain TCP), for
# the tests of TLS and password authentication. Its certificate, for `localhost` and
# 127.0.0.1, is signed by a test CA made here with the openssl CLI. Exports
# FLYTEINFRA_TEST_PGTLS_PORT, FLYTEINFRA_TEST_PGTLS_PASSWORD (the superuser `postgres`'s,
# set by initdb), FLYTEINFRA_TEST_PGTLS_CA (the CA's PEM file) and
# FLYTEINFRA_TEST_PGTLS_OTHER_CA (a CA that signed nothing).
start_postgres_tls() {
    local bin port dir password
    bin=$(postgres_bindir) || true
    if [ -z "$bin" ]; then
        echo "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/test, or apt-get install postgresql" >&2
        return 1
    fi
    if ! command -v openssl >/dev/null; then
        echo "the openssl CLI is not installed (apt-get install openssl)" >&2
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        dir=$(mktemp -d /tmp/flyteinfra-pgtls.XXXXXX)
    else
        dir=$(mktemp -d "${TMPDIR:-/tmp}/flyteinfra-pgtls.XXXXXX")
    fi
    password=$(openssl rand -hex 16)
    if ! (
        cd "$dir" &&
            for ca in ca other-ca; do
                openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ca.key" -out "$ca.crt" -days 2 \
                    -subj "/CN=flyteinfra test $ca" -addext "basicConstraints=critical,CA:TRUE" \
                    -addext "keyUsage=critical,keyCertSign,cRLSign" || exit 1
            done &&
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
                -out server.csr -subj "/CN=localhost" &&
            printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext &&
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 2 \
                -extfile server.ext -out server.crt &&
            chmod 600 server.key &&
            printf '%s\n' "$password" >pwfile
    ) >"$dir/openssl.log" 2>&1; then
        cat "$dir/openssl.log" >&2
        rm -rf "$dir"
        return 1
    fi
    if [ "$(id -u)" -eq 0 ]; then
        chown -R postgres:postgres "$dir"
    fi
    port=$(free_port)
    if ! _as_postgres_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 -N >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        return 1
    fi
    rm -f "$dir/pwfile"
    printf '%s\n' "local all all trust" "hostssl all all 127.0.0.1/32 scram-sha-256" >"$dir/data/pg_hba.conf"
    if ! _as_postgres_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" \
        -w start >/dev/null; then
        cat "$dir/log" >&2
        rm -rf "$dir"
        return 1
    fi
    POSTGRES_TLS_DIR=$dir
    export FLYTEINFRA_TEST_PGTLS_PORT=$port FLYTEINFRA_TEST_PGTLS_PASSWORD=$password
    export FLYTEINFRA_TEST_PGTLS_CA=$dir/ca.crt FLYTEINFRA_TEST_PGTLS_OTHER_CA=$dir/other-ca.crt
}

# Stops the cluster start_postgres_tls started and deletes its directory.
stop_postgres_tls() {
    local bin
    if [ -n "${POSTGRES_TLS_DIR:-}" ]; then
        bin=$(postgres_bindir) || true
        if [ -n "$bin" ]; then
            _as_postgres_owner "$bin/pg_ctl" -D "$POSTGRES_TLS_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        fi
        rm -rf "$POSTGRES_TLS_DIR"
    fi
    POSTGRES_TLS_DIR=
    unset FLYTEINFRA_TEST_PGTLS_PORT FLYTEINFRA_TEST_PGTLS_PASSWORD FLYTEINFRA_TEST_PGTLS_CA FLYTEINFRA_TEST_PGTLS_OTHER_CA
}
