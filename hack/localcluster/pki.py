"""Certificates and keys of the local control plane, made with the openssl command line.

One CA signs the API server's serving cert (loopback + the ``kubernetes`` service names),
the process node's kubelet API serving cert, and the client certs: ``admin`` (group
``system:masters``) and one per control-plane component (their built-in RBAC identities).
A separate RSA key pair signs ServiceAccount tokens.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "3650"

# Client identities: file stem -> (CN = user, O = group or "").
CLIENTS = {
    "admin": ("spotrun-admin", "system:masters"),
    "kube-scheduler": ("system:kube-scheduler", ""),
    "kube-controller-manager": ("system:kube-controller-manager", ""),
    "process-node": ("system:node-admin", "system:masters"),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}

SERVER_SANS = (
    "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
    "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
)


@dataclass(frozen=True)
class Pki:
    dir: Path

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed in {cwd}: {result.stderr.strip()}")


def _sign(pki: Pki, name: str, subject: str, ext: str) -> None:
    d = pki.dir
    _openssl("genrsa", "-out", f"{name}.key", "2048", cwd=d)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", f"{name}.ext",
        "-out", f"{name}.crt", cwd=d,
    )


def ensure(directory: Path) -> Pki:
    """Create every cert and key once; later calls reuse them."""
    pki = Pki(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not pki.ca_crt.exists():
        _openssl("genrsa", "-out", "ca.key", "2048", cwd=directory)
        _openssl(
            "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=spotrun-local-ca",
            "-days", DAYS, "-sha256", "-out", "ca.crt", cwd=directory,
        )
    if not pki.crt("apiserver").exists():
        _sign(
            pki, "apiserver", "/CN=kube-apiserver",
            f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={SERVER_SANS}\n",
        )
    if not pki.crt("kubelet").exists():
        _sign(
            pki, "kubelet", "/CN=process-node",
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
    for name, (cn, org) in CLIENTS.items():
        if not pki.crt(name).exists():
            subject = f"/CN={cn}" + (f"/O={org}" if org else "")
            _sign(
                pki, name, subject,
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n",
            )
    if not pki.sa_key.exists():
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=directory)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=directory)
    return pki
