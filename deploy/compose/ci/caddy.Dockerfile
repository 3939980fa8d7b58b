# CI's load balancer: Caddy built from its module at the version of the
# official image in docker-compose.yml. Like that image, it keeps its state
# in /data and /config and is started by the compose file's command.
FROM scratch
COPY caddy /usr/bin/caddy
ENV XDG_CONFIG_HOME=/config XDG_DATA_HOME=/data
