# syntax=docker/dockerfile:1
# drscreen container image:  docker build -t drscreen:0.1.0 .
# The builder runs deploy/build.sh, the same script as a build by hand, and the runtime
# stage takes exactly what it staged: the binary, the ONNX Runtime library that build.rs
# fetched (pinned onnxruntime wheel, sha256-checked) and the locked model package.
# x86_64 only: build.rs fetches the manylinux x86_64 wheel.

FROM rust:1.95-bookworm AS builder
# pip for build.rs's wheel download, a C compiler for libjpeg-turbo, nasm for its SIMD.
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip gcc nasm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    deploy/build.sh --profile release --out /stage

FROM debian:12-slim
# curl for HEALTHCHECK; ca-certificates for TLS to PostgreSQL and S3; libstdc++ for ONNX Runtime.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libstdc++6 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 drscreen \
    && useradd --system --uid 10001 --gid drscreen --home-dir /var/lib/drscreen --shell /usr/sbin/nologin drscreen \
    && install -d -o drscreen -g drscreen /var/lib/drscreen
COPY --from=builder /stage /opt/drscreen
ENV PATH=/opt/drscreen/bin:$PATH \
    ORT_DYLIB_PATH=/opt/drscreen/lib/libonnxruntime.so \
    DRSCREEN_MODEL=/opt/drscreen/models/dr-synth \
    DRSCREEN_DATA_DIR=/var/lib/drscreen \
    DRSCREEN_LISTEN=0.0.0.0:8080 \
    DRSCREEN_DICOM_BIND=0.0.0.0 \
    DRSCREEN_DICOM_PORT=11112
USER 10001:10001
WORKDIR /var/lib/drscreen
VOLUME /var/lib/drscreen
EXPOSE 8080 11112
# serve binds only once the model is verified and warm: allow for that before counting failures.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["drscreen", "serve"]
