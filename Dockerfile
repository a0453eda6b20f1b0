# macvsw in a small image: the static binaries (the daemon and the CNI
# plugin) and nothing else.
#
#   docker build -t macvsw .
#   docker run --rm --network host --cap-drop ALL \
#     --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_ADMIN \
#     -v /etc/macvsw:/etc/macvsw:ro -v /run/macvsw:/run/macvsw \
#     --device /dev/net/tun -v /var/run/netns:/var/run/netns:rslave \
#     macvsw run --config /etc/macvsw/macvsw.yaml
#
# Capabilities: NET_ADMIN (taps, netlink), NET_RAW (AF_PACKET) and, for
# tap ports and ports in another namespace, SYS_ADMIN (setns into the
# sandbox's namespace); add CHOWN when control.group is set. Podman takes
# the same flags.
FROM docker.io/library/golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /macvsw ./cmd/macvsw
# The CNI plugin, for an init container to install on the node:
#   /macvsw-cni install /host/opt/cni/bin [CONFLIST /host/etc/cni/net.d]
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /macvsw-cni ./cmd/macvsw-cni

FROM scratch
COPY --from=build /macvsw /macvsw
COPY --from=build /macvsw-cni /macvsw-cni
ENTRYPOINT ["/macvsw"]
CMD ["run", "--config", "/etc/macvsw/macvsw.yaml"]
