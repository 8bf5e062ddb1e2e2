# spotrun.local/golang:<go version>-bookworm-<hash>: the host's Go toolchain (GOROOT, copied
# into go/ by hack/kind/images) on the Debian base, the stand-in for golang:1.26-bookworm in
# sidecar/Dockerfile's entrypoint stage (Debian's golang is 1.19; entrypoint/go.mod needs 1.26).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY go/ /usr/local/go/
ENV PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local container=
RUN go version
CMD ["go", "version"]
