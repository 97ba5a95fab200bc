# botilyx-media image.
#
#   builder  compiles the binary with a pinned Rust toolchain; the dependencies
#            are compiled in a layer of their own, so a change under src/ only
#            recompiles this crate.
#   binary   the binary to ship. By default it is the builder's output; the
#            build argument BINARY_SOURCE may name an image that holds
#            /botilyx-media instead (tests/container.sh does so, because no
#            Rust image can be pulled where it runs). Stages after this one are
#            the same either way.
#   rootfs   assembles the runtime files on Debian bookworm-slim: the binary,
#            the shared libraries it links, user and group 1001, the /data
#            folders.
#   runtime  those files on an empty image: no shell, no package manager.
#
# Build:  docker build -t botilyx-media .
# Run:    docker run -p 127.0.0.1:8080:8080 -v botilyx-data:/data --read-only \
#           -e MEDIA_UPLOAD_TOKEN_FILE=/run/secrets/upload-token ... botilyx-media

ARG RUST_VERSION=1.95.0
ARG BINARY_SOURCE=builder

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build

# Dependencies first: this layer is reused until Cargo.toml or Cargo.lock
# change. The placeholder sources are removed, with their build outputs, so the
# real crate is always compiled in the next layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src \
        target/release/botilyx-media* \
        target/release/.fingerprint/botilyx-media-* \
        target/release/deps/botilyx_media-* \
        target/release/deps/libbotilyx_media-*

# Then the crate: everything .dockerignore lets through (src/, and the files
# src/ embeds with include_bytes!).
COPY . .
RUN cargo build --release --locked \
    && install -m 0755 target/release/botilyx-media /botilyx-media

FROM ${BINARY_SOURCE} AS binary

FROM debian:bookworm-slim AS rootfs
COPY --from=binary /botilyx-media /rootfs/usr/local/bin/botilyx-media

# NOTE: ldd lists the dynamic loader and every library the binary links; each
# is copied to the path the loader looks in, and the package that ships it is
# recorded under /var/lib/dpkg/status.d, as distroless images do, so image
# scanners still see the glibc version. A library ldd cannot find stops the
# build here instead of at the first start.
RUN set -eu; \
    bin=/rootfs/usr/local/bin/botilyx-media; \
    if ldd "$bin" | grep -q 'not found'; then ldd "$bin"; exit 1; fi; \
    mkdir -p /rootfs/var/lib/dpkg/status.d; \
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do \
        cp -L --parents "$lib" /rootfs/; \
        pkg="$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")")"; \
        pkg="${pkg%%:*}"; \
        dpkg-query -s "$pkg" > "/rootfs/var/lib/dpkg/status.d/$pkg"; \
    done; \
    mkdir -p /rootfs/etc /data-skeleton/medications /data-skeleton/treatment-images; \
    mkdir -m 1777 /rootfs/tmp; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nbotilyx:x:1001:1001:botilyx-media:/data:/sbin/nologin\n' > /rootfs/etc/passwd; \
    printf 'root:x:0:\nbotilyx:x:1001:\n' > /rootfs/etc/group; \
    "$bin" --help > /dev/null

FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
# 1001:1001 owns the photos on the host today; /data and its folders match it.
COPY --from=rootfs --chown=1001:1001 /data-skeleton/ /data/

# NOTE: no VOLUME instruction. Docker would mount an anonymous volume at /data
# and hide the mistake `botilyx-media check` exists to catch: without a named
# volume or bind mount, /data is on the container's own filesystem (EPHEMERAL).
ENV MEDIA_DATA_DIR=/data \
    MEDIA_BIND=0.0.0.0:8080
USER 1001:1001
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/botilyx-media", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/botilyx-media"]
CMD ["serve"]
