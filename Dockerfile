# check=error=true
#
# tokenrelay container image: a static binary on distroless, running as the
# distroless "nonroot" user (65532). The image writes nothing at run time, so
# it runs with a read-only root filesystem; ACME storage (tls.mode: acme) needs
# a mounted volume.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t tokenrelay .
#   docker run --read-only -v "$PWD/config.yaml:/etc/tokenrelay/config.yaml:ro" \
#     -p 8080:8080 tokenrelay
#
# The admin listener (/metrics, /healthz, /readyz) defaults to 127.0.0.1:9090,
# inside the container only; to publish it, set admin_listen: ":9090" in the
# file (or -e TOKENRELAY_ADMIN_LISTEN=:9090) and add -p 127.0.0.1:9090:9090.
#
# The "check=error=true" directive above makes BuildKit fail the build on any
# of its lint warnings; scripts/lint-dockerfile.sh runs the same rules offline.

ARG GO_VERSION=1.26

# The builder runs on the build machine's platform and cross-compiles for the
# target, so multi-platform builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" \
      -o /out/tokenrelay ./cmd/tokenrelay

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="tokenrelay" \
      org.opencontainers.image.description="OAuth2/OIDC token handler (Backend-for-Frontend) reverse proxy" \
      org.opencontainers.image.source="https://github.com/tokenrelay/tokenrelay" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/tokenrelay /tokenrelay
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8080: traffic; 9090: admin (/metrics, /healthz, /readyz).
EXPOSE 8080 9090
# Exec form: distroless has no shell. The URL works with the default
# admin_listen (127.0.0.1:9090) and with ":9090"; override HEALTHCHECK when the
# port changes. Kubernetes ignores HEALTHCHECK and uses the chart's probes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/tokenrelay", "healthcheck", "--url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["/tokenrelay"]
CMD ["serve", "--config", "/etc/tokenrelay/config.yaml"]
