# phoenix-agent: the process-metrics agent.
#
# Build from the repository root (see deploy/docker/README.md):
#   docker build -f deploy/docker/agent.Dockerfile -t phoenix-agent:dev .
#
# Two stages: a Rust toolchain builds the release binary; the runtime image is
# distroless (glibc, libgcc, CA certificates, nothing else: no shell, no
# package manager): the binary (15 MB) on a 25 MB base.
#
# The image runs as root (uid 0) on purpose: reading every process's /proc
# entries needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, and Linux gives added
# capabilities to uid 0 only (Kubernetes and Docker set no ambient
# capabilities for other users). Drop every other capability where you run it
# (deploy/k8s, deploy/helm and docs/operations.md show how); run it as any
# other user and it still works, reporting only what that user may read.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:latest

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# Line tables are useful in a debugger, not in an image: strip them.
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN cargo build --release --locked -p phoenix-agent --bin phoenix-agent \
 && install -D -m 0755 target/release/phoenix-agent /out/phoenix-agent \
 && /out/phoenix-agent validate --config configs/agent.yaml

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/phoenix-agent /usr/local/bin/phoenix-agent
# The production-shaped config; Kubernetes mounts its ConfigMap over
# /etc/phoenix, a host service its own file.
COPY configs/agent.yaml /etc/phoenix/agent.yaml
USER 0:0
# 8888: /metrics, /healthz, /readyz; 9464: the Prometheus exporter.
EXPOSE 8888 9464
ENTRYPOINT ["/usr/local/bin/phoenix-agent"]
CMD ["--config", "/etc/phoenix/agent.yaml"]
