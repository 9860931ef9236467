# phoenix-controller and phoenixctl in one image.
#
# Build from the repository root (see deploy/docker/README.md):
#   docker build -f deploy/docker/controller.Dockerfile -t phoenix-controller:dev .
#
# Two stages: a Rust toolchain builds both release binaries; the runtime image
# is distroless (glibc, libgcc, CA certificates: no shell) and runs as the
# unprivileged user 65532. The shipped templates (configs/templates) are in
# the image, so `phoenixctl config push --template process-standard-v1`
# works out of the box; mount your own directory over them to change the set.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
# The data directory is made here, owned by the runtime user: distroless has
# no mkdir.
RUN cargo build --release --locked -p phoenix-controller --bin phoenix-controller -p phoenixctl --bin phoenixctl \
 && install -D -m 0755 target/release/phoenix-controller /out/bin/phoenix-controller \
 && install -D -m 0755 target/release/phoenixctl /out/bin/phoenixctl \
 && install -d -m 0750 -o 65532 -g 65532 /out/data

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/bin/ /usr/local/bin/
COPY configs/templates/ /usr/share/phoenix/templates/
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/phoenix-controller/
# In a container the ports must be reachable from outside it: listen on every
# interface. Without TLS the controller then refuses to start: give
# --tls-cert/--tls-key, or say plain text is meant (PHOENIX_INSECURE_PLAINTEXT=true
# or --insecure-plaintext, e.g. behind a NetworkPolicy as deploy/k8s does).
# Tokens are never baked in: PHOENIX_API_TOKEN(_FILE) and
# PHOENIX_AGENT_TOKEN(_FILE) at run time.
ENV PHOENIX_DATA_DIR=/var/lib/phoenix-controller \
    PHOENIX_TEMPLATES_DIR=/usr/share/phoenix/templates \
    PHOENIX_GRPC_LISTEN=0.0.0.0:4320 \
    PHOENIX_HTTP_LISTEN=0.0.0.0:8080
USER 65532:65532
# 4320: gRPC for agents; 8080: API, /metrics, /healthz, /readyz.
EXPOSE 4320 8080
ENTRYPOINT ["/usr/local/bin/phoenix-controller"]
