# keel's image: the release binary on distroless, running as an unprivileged user.
#
#   docker build -t keel .
#   docker run --rm -p 8080:8080 keel
#
# Stages: `chef` has the toolchain and cargo-chef; `planner` reduces the workspace to a recipe of
# its dependencies; `builder` compiles that recipe first (only what the `keel` binary needs, not
# the benchmarks' baselines), in a layer that stays cached until a Cargo.toml or Cargo.lock
# changes, then compiles the workspace's own crates. Editing src/ or crates/ rebuilds only them.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-trixie AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin keel
COPY . .
# The image has no .git: pass the commit for the keel_build_info metric.
ARG KEEL_GIT_COMMIT=unknown
ENV KEEL_GIT_COMMIT=${KEEL_GIT_COMMIT}
RUN cargo build --release --locked --bin keel

# Same Debian release as the builder, so the glibc the binary links against is there.
FROM gcr.io/distroless/cc-debian13:nonroot
COPY --from=builder /app/target/release/keel /usr/local/bin/keel
# Production configuration: listen on 0.0.0.0:8080, JSON logs. Override with APP_* variables.
ENV APP_ENV=production
EXPOSE 8080
USER 65532:65532
# distroless has no curl: keel checks its own /readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["/usr/local/bin/keel", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/keel"]
CMD ["serve"]
