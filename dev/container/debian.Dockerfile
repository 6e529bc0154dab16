# A local stand-in for the `debian:bookworm-slim` image: Debian bookworm made by debootstrap
# (imported as bugbot-local/bookworm:minbase), plus the certificate authorities this machine added
# to its own trust store (a TLS-inspecting proxy between it and the registries), which images built
# on it then trust once they install `ca-certificates`.
FROM bugbot-local/bookworm:minbase
COPY extra-ca/ /usr/local/share/ca-certificates/
LABEL org.bugbot.local-stand-in="debian:bookworm-slim"
CMD ["bash"]
