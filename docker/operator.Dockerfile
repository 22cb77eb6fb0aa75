# The Rivulet operator image: the rivulet-operator binary this checkout builds (TLS by
# rustls, so it needs nothing beyond libc), on a minimal Debian runtime. `make images`
# builds the binary and this image (scripts/images.sh stages the binary as the context).
#
#   docker build -f docker/operator.Dockerfile --build-arg BASE=debian:bookworm-slim \
#     -t rivulet/operator:VERSION CONTEXT
ARG BASE=debian:bookworm-slim
FROM ${BASE}

COPY rivulet-operator /usr/local/bin/rivulet-operator

USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/rivulet-operator"]
CMD ["run"]
