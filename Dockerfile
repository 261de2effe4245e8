# berth container image: `docker build -t berth .` or `docker-compose up --build`.
# Stage 1 builds the release binary; stage 2 is a slim runtime with only that binary.
FROM rust:1-bookworm AS build
# protoc and protobuf's well-known types: the etcd metadata backend compiles etcd's protocol.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin berth \
 && install -D -m 0755 target/release/berth /out/berth

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin berth \
 && mkdir -p /data && chown berth:berth /data
COPY --from=build /out/berth /usr/local/bin/berth
USER berth
VOLUME ["/data"]
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/berth"]
# Listens on all interfaces inside the container, so that the published port reaches it.
# Note: once authentication lands, berth will refuse a non-loopback --listen without auth
# configured; add the auth settings here (or in a config file mounted into the container) then.
CMD ["serve", "--listen", "0.0.0.0:5000", "--data-dir", "/data"]
