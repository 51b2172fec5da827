# Sourced by scripts/test and scripts/demo: install Azurite (the Azure Storage emulator,
# from npm) into .tools/azurite if missing; start/stop its blob service and the Azure test
# double (tests/azure-double: Azure Resource Manager, which has no emulator) on free
# loopback ports.
. "$(dirname "${BASH_SOURCE[0]}")/ports.sh"

# 3.35 is the last release that runs on Node 20 (3.36 needs Node 21, 3.37 Node 22).
AZURITE_VERSION=3.35

azurite_version() {
    node -p 'require("./.tools/azurite/node_modules/azurite/package.json").version' 2>/dev/null || true
}

ensure_azurite() {
    case "$(azurite_version)" in
        "$AZURITE_VERSION".*) ;;
        *)
            command -v npm >/dev/null || { echo "npm (Node.js) is needed to install Azurite" >&2; exit 1; }
            echo "Installing Azurite $AZURITE_VERSION into .tools/azurite ..." >&2
            npm install --prefix .tools/azurite --no-audit --no-fund --silent "azurite@$AZURITE_VERSION"
            case "$(azurite_version)" in
                "$AZURITE_VERSION".*) ;;
                *) echo "Azurite '$(azurite_version)' got installed; the tests expect $AZURITE_VERSION.x" >&2; exit 1 ;;
            esac
            ;;
    esac
}

# Starts both (target/debug/azure-double must be built: it also gives Azurite's account
# SAS) and points flyteinfra at them. With both endpoints on loopback flyteinfra sends
# no credentials at all (src/context.rs builds no credential chain: no az CLI, no managed
# identity, no AZURE_* variables), and every AZURE_* variable is unset besides, as the
# integration tests do. Azurite runs as the node process itself (`exec` through the .bin
# shim's `#!/usr/bin/env node`), so stop_azure's kill reaches it.
start_azure() {
    local blob_port double_port sas v
    sas=$(target/debug/azure-double --azurite-sas)
    blob_port=$(free_port)
    # The flags tests/azure-double/src/azurite.rs starts it with: in memory, a newer
    # x-ms-version than Azurite knows accepted, no telemetry host.
    (exec .tools/azurite/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$blob_port" \
        --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry --silent \
        </dev/null >"${AZURITE_LOG:-/dev/null}" 2>&1) &
    AZURITE_PID=$!
    double_port=$(free_port)
    (exec target/debug/azure-double --port "$double_port" </dev/null >"${DOUBLE_LOG:-/dev/null}" 2>&1) &
    AZURE_DOUBLE_PID=$!
    wait_port "$blob_port"
    wait_port "$double_port"
    for v in $(compgen -e); do
        case "$v" in AZURE_*) unset "$v" ;; esac
    done
    export FLYTEINFRA_AZURE_ENDPOINT="http://127.0.0.1:$double_port"
    export FLYTEINFRA_AZURE_BLOB_ENDPOINT="http://127.0.0.1:$blob_port/devstoreaccount1?$sas"
}

# Killed servers exit 143: that is the point, not a failure of the script.
stop_azure() {
    local pid
    for pid in ${AZURE_DOUBLE_PID:-} ${AZURITE_PID:-}; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    AZURITE_PID= AZURE_DOUBLE_PID=
}
