#!/usr/bin/env bash
# Validates the Helm chart deploy/helm/callmesh offline, for its default
# values and each deploy/helm/callmesh/ci/*-values.yaml:
#  - helm lint --strict, and helm template (values.schema.json checks the
#    values);
#  - kubectl-validate: every Kubernetes object against the OpenAPI schemas
#    of Kubernetes $KUBE_VERSION, which the tool embeds (unknown fields,
#    types, required fields). ServiceMonitors are left to chartcheck: their
#    schema is prometheus-operator's;
#  - chartcheck (deploy/helm/chartcheck): strict decoding into the Go types
#    (ServiceMonitors too), what the chart promises (grace periods, probes,
#    PDBs, WebSocket timeouts, selectors, no service links, known keys), and
#    each container's command started with its rendered environment.
# Then it checks that chartcheck catches an unknown configuration key.
# helm and kubectl-validate are built from the Go module proxy at pinned
# versions, once, into $(go env GOPATH)/callmesh-tools.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM=helm.sh/helm/v3/cmd/helm@v3.20.2
KUBECTL_VALIDATE=sigs.k8s.io/kubectl-validate@v0.0.4
KUBE_VERSION=1.30.0

# tool MODULE@VERSION: the path of its binary, built if missing.
tool() {
  local dir
  dir="$(go env GOPATH)/callmesh-tools/$(basename "${1%@*}")-${1#*@}"
  if [ ! -x "$dir/$(basename "${1%@*}")" ]; then
    echo "building $1" >&2
    GOBIN="$dir" go install "$1"
  fi
  echo "$dir/$(basename "${1%@*}")"
}
helm=$(tool "$HELM")
kubectl_validate=$(tool "$KUBECTL_VALIDATE")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/callmesh" ./cmd/callmesh
(cd deploy/helm/chartcheck && go vet ./... && go build -o "$work/chartcheck" .)

# without_service_monitors FILE: FILE's documents but ServiceMonitors.
without_service_monitors() {
  awk 'function flush() { if (doc !~ /\nkind: ServiceMonitor\n/) printf "%s", doc; doc = "" }
       /^---$/ { flush() } { doc = doc $0 "\n" } END { flush() }' "$1"
}

chart=deploy/helm/callmesh
for values in defaults "$chart"/ci/*-values.yaml; do
  args=(--kube-version "$KUBE_VERSION")
  name=defaults
  if [ "$values" != defaults ]; then
    args+=(-f "$values")
    name=$(basename "$values" -values.yaml)
  fi
  echo "--- $name"
  "$helm" lint --strict "$chart" "${args[@]}"
  "$helm" template callmesh "$chart" "${args[@]}" >"$work/$name.yaml"
  without_service_monitors "$work/$name.yaml" >"$work/$name-native.yaml"
  "$kubectl_validate" --version "${KUBE_VERSION%.*}" "$work/$name-native.yaml"
  "$work/chartcheck" -callmesh "$work/callmesh" "$work/$name.yaml"
done

echo "--- chartcheck refuses an unknown key"
"$helm" template callmesh "$chart" --kube-version "$KUBE_VERSION" --set 'router.config.router\.bogus=1' >"$work/bogus.yaml"
if "$work/chartcheck" -callmesh "$work/callmesh" "$work/bogus.yaml" >"$work/bogus.out" 2>&1; then
  cat "$work/bogus.out"
  echo "chartcheck passed a chart that sets CALLMESH_ROUTER_BOGUS"
  exit 1
fi
grep -q 'unknown environment variable CALLMESH_ROUTER_BOGUS' "$work/bogus.out"
echo "chart checked in ${SECONDS}s"
