# deputy in a container: build with the Rust toolchain, run on a slim Debian with git and
# bubblewrap. Inside a container user namespaces are often refused, so the bash sandbox falls
# back to Landlock (Linux 5.13+); `deputy sandbox check` says which one works.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin deputy

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/deputy /usr/local/bin/deputy
COPY examples/mock /usr/share/deputy/mock
ENV DEPUTY_HOME=/var/lib/deputy
WORKDIR /workspace
ENTRYPOINT ["deputy"]
CMD ["--help"]
