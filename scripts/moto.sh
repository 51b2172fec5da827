# Sourced by scripts/test and scripts/demo: install moto (the AWS emulator) into the
# project's .venv if missing, and start/stop one on a free loopback port.
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"
MOTO_VERSION=5.1.22

ensure_moto() {
    if [ ! -x .venv/bin/moto_server ]; then
        echo "Installing moto[server]==$MOTO_VERSION into .venv ..." >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet "moto[server]==$MOTO_VERSION"
    fi
}

# Starts moto and, in front of it, the proxy every client talks to (tests/aws-proxy, a
# test double: it answers as AWS does where moto does not, e.g. EKS's cluster security
# group), then points the AWS SDK at the proxy with static test credentials; nothing may
# reach a non-loopback address (no instance metadata).
start_moto() {
    local moto_port port
    # The flags scripts/demo builds with (the features `cargo test --workspace` resolves):
    # a `-p` build alone would resolve other features and compile tokio and hyper again.
    cargo build --quiet --workspace --bins --examples
    moto_port=$(free_port)
    MOTO_IAM_LOAD_MANAGED_POLICIES=true .venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"${MOTO_LOG:-/dev/null}" 2>&1 &
    MOTO_PID=$!
    port=$(free_port)
    target/debug/moto-proxy --port "$port" "http://127.0.0.1:$moto_port" >"${MOTO_PROXY_LOG:-/dev/null}" 2>&1 &
    MOTO_PROXY_PID=$!
    wait_port "$moto_port"
    wait_port "$port"
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    export AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_SESSION_TOKEN
}

# Killed servers exit 143: that is the point, not a failure of the script.
stop_moto() {
    local pid
    for pid in ${MOTO_PROXY_PID:-} ${MOTO_PID:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    MOTO_PID= MOTO_PROXY_PID=
}
