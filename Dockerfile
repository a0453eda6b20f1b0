# macvsw in a small image: the static binary and nothing else.
#
#   docker build -t macvsw .
#   docker run --rm --network host --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_ADMIN \
#     -v /etc/macvsw:/etc/macvsw:ro -v /run/macvsw:/run/macvsw \
#     --device /dev/net/tun -v /var/run/netns:/var/run/netns:rslave \
#     macvsw run --config /etc/macvsw/macvsw.yaml
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /macvsw ./cmd/macvsw

FROM scratch
COPY --from=build /macvsw /macvsw
ENTRYPOINT ["/macvsw"]
CMD ["run", "--config", "/etc/macvsw/macvsw.yaml"]
