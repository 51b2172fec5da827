# Sourced by scripts/test and scripts/demo: install moto (the AWS emulator) into the
# project's .venv if missing, and start/stop one on a free loopback port.
MOTO_VERSION=5.1.22

ensure_moto() {
    if [ ! -x .venv/bin/moto_server ]; then
        echo "Installing moto[server]==$MOTO_VERSION into .venv ..." >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet "moto[server]==$MOTO_VERSION"
    fi
}

# Starts moto and points the AWS SDK at it with static test credentials; nothing may
# reach a non-loopback address (no instance metadata).
start_moto() {
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    MOTO_IAM_LOAD_MANAGED_POLICIES=true .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"${MOTO_LOG:-/dev/null}" 2>&1 &
    MOTO_PID=$!
    for _ in $(seq 1 300); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_SESSION_TOKEN
}

stop_moto() {
    if [ -n "${MOTO_PID:-}" ]; then
        kill "$MOTO_PID" 2>/dev/null || true
        wait "$MOTO_PID" 2>/dev/null || true
    fi
    MOTO_PID=
}
