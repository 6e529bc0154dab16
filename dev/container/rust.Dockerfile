# A local stand-in for the `rust:1.95-bookworm` image (no registry is reachable on the machines the
# tests run on): Debian bookworm (made by debootstrap), a C toolchain, and the host's pinned Rust
# toolchain (rust-toolchain.toml), copied in by scripts/container-engine.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
COPY rust /usr/local/rust
ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
LABEL org.bugbot.local-stand-in="rust:1.95-bookworm"
