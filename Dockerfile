# syntax=docker/dockerfile:1
#
# The `plasma` binary in a small Debian image.
#
#   docker build -t plasma-engine .
#   docker run --rm -p 8080:8080 -e PLASMA_DATABASE_URL=postgres://... -e PLASMA_JWT_SECRET=... plasma-engine
#
# Subcommands are the arguments: `serve` (the default), `migrate`, `relay`,
# `project --read-model NAME`, `embed`, `alerts`, `schemas register`, `token ...`. infra/redpanda/docker-compose.yml runs them all.

# The compiler of rust-toolchain.toml. The workspace's rust-version (1.85) is not enough for
# the locked dependencies (uuid 1.29 needs 1.89, apache-avro 0.22 1.88).
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS builder
# Use the image's compiler as it is (RUST_VERSION here is the rust image's own ENV, the full
# version of its toolchain). Without this, rust-toolchain.toml would make rustup fetch the
# components it lists (rustfmt, clippy), which a release build does not need.
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never

# rdkafka builds its bundled librdkafka from source with librdkafka's own configure script and
# make (not cmake): a C toolchain, make, perl, pkg-config and zlib headers (compression). SSL,
# SASL, zstd and curl are disabled in that build, and HTTP clients use rustls: no OpenSSL.
# The rust image has most of these already; listing them keeps the build honest.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential make perl pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# Cache mounts keep the crates.io downloads and the target dir between builds (BuildKit); the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin plasma \
    && install -D -m 0755 target/release/plasma /out/plasma


FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to PostgreSQL, the registry or brokers outside the compose network.
# zlib1g: librdkafka's compression (already in the base image; named as a dependency).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 plasma \
    && useradd --system --uid 10001 --gid plasma --home-dir /app --shell /usr/sbin/nologin plasma \
    && mkdir -p /app \
    && chown plasma:plasma /app

COPY --from=builder /out/plasma /usr/local/bin/plasma
# The Avro schemas, for commands that read them from ./schemas (the working directory is /app).
COPY schemas /app/schemas

# Fail the image build, not the first start, if a shared library is missing or a subcommand the
# Helm chart runs is not in this binary.
RUN /usr/local/bin/plasma --version \
    && for command in serve migrate relay project embed alerts replay schemas topics tail token openapi dev bench; do \
         /usr/local/bin/plasma "$command" --help >/dev/null || exit 1; \
       done

USER plasma:plasma
# `plasma dev` keeps its SQLite files in ./.plasma, here /app/.plasma.
WORKDIR /app

# In a container, listen on every interface (the binary's default is 127.0.0.1:8080).
ENV PLASMA_LISTEN=0.0.0.0:8080
EXPOSE 8080

ENTRYPOINT ["/usr/local/bin/plasma"]
CMD ["serve"]
