# syntax=docker/dockerfile:1.7
# The reconciler image: `docker build -t previewd .` from the repository root.
# Build stage: the workspace's locked dependencies, release profile, the `previewd` binary only.
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p previewd --bin previewd \
    && cp target/release/previewd /previewd

# Runtime: distroless with glibc and CA certificates, no shell, non-root (the chart runs it as
# 65532 with a read-only root filesystem and every capability dropped).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /previewd /usr/local/bin/previewd
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/previewd"]
CMD ["run", "--config", "/etc/previewd/config.yaml"]
