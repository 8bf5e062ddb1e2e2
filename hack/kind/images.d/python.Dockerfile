# spotrun.local/python:<Debian's python3>-bookworm-<hash>: what the python:3.x-slim-bookworm
# images give a Dockerfile (python, python -m venv, pip), made from the debootstrapped Debian
# base (hack/kind/base-image) and Debian's packages, for machines that cannot pull images.
# Built by hack/kind/images, never published: it trusts the CA files hack/kind/images puts in
# ca/ (the host's local additions, e.g. a proxy's; empty where there are none).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PYTHON_VERSION
COPY ca/ /usr/local/share/ca-certificates/
# python-is-python3 gives `python`; pip may install into the system as in the python images
# (no EXTERNALLY-MANAGED marker), and every pip (a venv's too) uses Debian's CA bundle.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip python-is-python3 \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/lib/python3.*/EXTERNALLY-MANAGED \
 && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >/etc/pip.conf \
 && python -c "import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(v != '${PYTHON_VERSION}' \
      and f'Debian gave python {v}, hack/kind/versions.env says ${PYTHON_VERSION}')"
ENV container= LANG=C.UTF-8
CMD ["python3"]
