# CI's Prometheus: the server of Debian's prometheus package (2.42, whose
# binary links libc dynamically, hence libc and its loader beside it), run
# as the official image runs prom/prometheus. Its web UI is left out (Debian
# serves it from JavaScript packages); its HTTP API, which the compose test
# asks about the targets, is all there.
FROM scratch
COPY prometheus /bin/prometheus
COPY libc.so.6 /lib/x86_64-linux-gnu/libc.so.6
COPY ld-linux-x86-64.so.2 /lib64/ld-linux-x86-64.so.2
ENV GODEBUG=netdns=go
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
