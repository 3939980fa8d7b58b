# CI's NATS image: nats-server built from the module in go.mod, where the
# official image (nats:2.15-alpine) runs the same release.
FROM scratch
COPY nats-server /nats-server
ENTRYPOINT ["/nats-server"]
