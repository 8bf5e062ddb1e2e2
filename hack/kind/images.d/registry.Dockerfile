# spotrun.local/registry:<version>-<hash>: the distribution project's registry (cmd/registry,
# static, built by hack/kind/build-parts registry) with registry.yml, for hack/kind/registry.
FROM scratch
COPY registry /bin/registry
COPY registry.yml /etc/distribution/config.yml
VOLUME /var/lib/registry
EXPOSE 5000
ENTRYPOINT ["/bin/registry"]
CMD ["serve", "/etc/distribution/config.yml"]
