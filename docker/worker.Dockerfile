# The Rivulet worker image: the rivulet-worker binary this checkout builds, on a minimal
# Debian runtime. `make images` builds the binary and this image (scripts/images.sh stages
# the binary as the build context, so the image runs exactly what the tests ran).
#
#   docker build -f docker/worker.Dockerfile --build-arg BASE=debian:bookworm-slim \
#     -t rivulet/worker:VERSION CONTEXT
ARG BASE=debian:bookworm-slim
FROM ${BASE}

# The runtime libraries of librdkafka (TLS, SASL, zlib) and RocksDB (C++), and CA
# certificates for TLS to brokers and object storage. Versions come with the base release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates libssl3 libsasl2-2 zlib1g libstdc++6 \
    && rm -rf /var/lib/apt/lists/*

COPY rivulet-worker /usr/local/bin/rivulet-worker

# Not root; any other uid works as well (the data directory is a volume).
USER 65532:65532
WORKDIR /var/lib/rivulet
ENV RIVULET_DATA_DIR=/var/lib/rivulet
EXPOSE 8080 6123
ENTRYPOINT ["/usr/local/bin/rivulet-worker"]
