# CI's callmesh image: the static binary `CGO_ENABLED=0 go build ./cmd/callmesh`,
# alone (deploy/Dockerfile builds the same binary in golang and runs it in
# distroless, neither of which CI can pull).
FROM scratch
COPY callmesh /callmesh
USER 65532:65532
ENTRYPOINT ["/callmesh"]
