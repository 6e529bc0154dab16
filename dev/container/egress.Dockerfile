# The network sidecar `wrangler dev` puts beside each container (MINIFLARE_CONTAINER_EGRESS_IMAGE):
# a local stand-in for Cloudflare's `proxy-everything` image, which no registry here can serve. The
# binary is `tests/src/bin/egress-sidecar.rs`, built on the host (same glibc as bookworm).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
COPY egress-sidecar /usr/local/bin/egress-sidecar
ENTRYPOINT ["/usr/local/bin/egress-sidecar"]
LABEL org.bugbot.local-stand-in="cloudflare/proxy-everything"
