# syntax=docker/dockerfile:1
#
# wabridge container image: a static binary on distroless (no shell, no package manager),
# running as an unprivileged user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse --short HEAD) -t wabridge .
#   docker run -d --name wabridge --network host --restart unless-stopped \
#     -v /etc/wabridge:/etc/wabridge:ro --env-file /etc/wabridge/wabridge.env wabridge
#
# Use host networking: the bridge relays RTP on a port range (20000-29999 by default, 4 ports
# per call) and advertises media.public_ip in its SDP, which Docker's per-port NAT and
# userland proxy handle badly (thousands of published ports, rewritten source addresses).
# docs/operations.md explains the details.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so source edits do not re-download them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# Static (no cgo), reproducible paths, version and commit for `wabridge version` (variables in
# cmd/wabridge/main.go).
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/wabridge ./cmd/wabridge

# static-debian12 has CA certificates (wabridge verifies Meta's TLS certificate against the
# system roots), tzdata and /etc/passwd with the nonroot user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wabridge /usr/local/bin/wabridge
USER nonroot:nonroot

# SIP from the PBX (UDP and TCP), SIP/TLS from Meta, health and metrics (http.listen), RTP.
# None is below 1024, so the unprivileged user needs no capability.
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp
EXPOSE 20000-29999/udp

# wabridge.yaml, tls/ and optionally wabridge.env; mount read-only.
VOLUME ["/etc/wabridge"]

# Distroless has no curl: the binary checks itself. It needs http.listen to serve on port 8080
# (e.g. "0.0.0.0:8080", or "127.0.0.1:8080" with --network host); with http.listen unset the
# container reports unhealthy.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/wabridge", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]

# SIGTERM drains active calls (new calls get 503); give `docker stop` enough time:
# docker stop --time 90 (or stop_grace_period: 90s in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wabridge"]
CMD ["run", "--config", "/etc/wabridge/wabridge.yaml"]
