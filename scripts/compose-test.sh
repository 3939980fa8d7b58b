#!/usr/bin/env bash
# The compose test: docker-compose.yml started for real and used through its
# load balancer (internal/composetest, build tag `compose`).
#  - Installs docker.io and docker-compose (Debian) if missing.
#  - Uses the running Docker daemon, or starts one of its own for this run
#    (data in a temporary directory) and stops it at the end.
#  - Builds the CI images of docker-compose.ci.yml FROM scratch: callmesh and
#    nats-server from this module, Caddy from its module at the version of
#    docker-compose.yml's image (built once into $(go env GOPATH)/callmesh-tools,
#    like scripts/check-helm.sh's tools), Prometheus from Debian's package.
#  - Runs the test, which brings the stack up and tears it down.
# Every image it built is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version of the caddy image in docker-compose.yml.
CADDY=github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9

export DEBIAN_FRONTEND=noninteractive DOCKER_BUILDKIT=0
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq docker.io docker-compose >/dev/null
fi

work=$(mktemp -d)
dockerd_pid=""
images=()
cleanup() {
  status=$?
  if [ ${#images[@]} -gt 0 ] && [ -z "$dockerd_pid" ]; then
    docker rmi -f "${images[@]}" >/dev/null 2>&1 || true
  fi
  if [ -n "$dockerd_pid" ]; then
    if [ "$status" != 0 ]; then echo "--- dockerd's log (tail)"; tail -40 "$work/dockerd.log"; fi
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$dockerd_pid" 2>/dev/null; then kill -9 "$dockerd_pid" || true; fi
    umount -R "$work/docker" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

if docker info >/dev/null 2>&1; then
  echo "using the running Docker daemon"
else
  echo "starting dockerd (data in $work/docker)"
  mkdir -p "$work/docker" "$work/exec"
  dockerd --data-root "$work/docker" --exec-root "$work/exec" --host "unix://$work/docker.sock" \
    --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  export DOCKER_HOST="unix://$work/docker.sock"
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    if ! kill -0 "$dockerd_pid" 2>/dev/null || [ "$i" = 60 ]; then
      echo "dockerd did not start:"; tail -30 "$work/dockerd.log"; exit 1
    fi
    sleep 0.5
  done
fi
docker version --format 'docker {{.Server.Version}}'
docker-compose version --short

echo "--- building the CI images"
# image NAME FILE...: builds callmesh-ci/NAME:local from
# deploy/compose/ci/<dockerfile> with FILEs as its context.
image() {
  local name=$1 dockerfile=$2 ctx="$work/ctx-$1"
  shift 2
  mkdir -p "$ctx"
  cp -L "$@" "$ctx/"
  if ! docker build -t "callmesh-ci/$name:local" -f "deploy/compose/ci/$dockerfile" "$ctx" >"$work/build.log" 2>&1; then
    cat "$work/build.log"; exit 1
  fi
  images+=("callmesh-ci/$name:local")
  echo "callmesh-ci/$name:local"
}
CGO_ENABLED=0 go build -trimpath -o "$work/callmesh" ./cmd/callmesh
CGO_ENABLED=0 go build -trimpath -o "$work/nats-server" github.com/nats-io/nats-server/v2
caddy_dir="$(go env GOPATH)/callmesh-tools/caddy-${CADDY#*@}"
if [ ! -x "$caddy_dir/caddy" ]; then
  echo "building $CADDY"
  CGO_ENABLED=0 GOBIN="$caddy_dir" go install -trimpath "$CADDY"
fi
# Debian's prometheus package, unpacked only: installing it would start a server.
if ! (cd "$work" && apt-get download -qq prometheus 2>/dev/null); then
  apt-get update -qq
  (cd "$work" && apt-get download -qq prometheus 2>/dev/null)
fi
dpkg-deb -x "$work"/prometheus_*.deb "$work/prometheus-deb"
image callmesh callmesh.Dockerfile "$work/callmesh"
image nats-server nats.Dockerfile "$work/nats-server"
image caddy caddy.Dockerfile "$caddy_dir/caddy"
image prometheus prometheus.Dockerfile "$work/prometheus-deb/usr/bin/prometheus" \
  /lib/x86_64-linux-gnu/libc.so.6 /lib64/ld-linux-x86-64.so.2

echo "--- the compose test"
go test -tags compose -count=1 -v -timeout 15m -run TestCompose ./internal/composetest
