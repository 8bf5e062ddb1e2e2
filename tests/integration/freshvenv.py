"""Fresh virtual environments for the packaging tests, without downloading torch again.

A fresh venv gets no packages of its own but the wheel under test; its dependencies come from
a *view* of the dev venv's site-packages: a folder of symlinks to each installed package,
listed in the fresh venv by a ``.pth`` file. The view leaves out the repository's editable
``spotrun`` (its dist-info, its ``__editable__`` finder and every ``.pth``, which site would
not process from a ``.pth``-listed folder anyway) and pip; a torch-free view also
leaves out torch and what comes with it (triton, the nvidia and cuda wheels), an S3-free view
boto3, botocore and s3transfer (the ``s3`` extra's), so an import of them where the extra is
not installed fails there as it would for a user. pip installs the wheel with ``--no-index``:
every dependency the wheel declares must already be in the view, so a torch requirement in the
``s3`` extra (or boto3 in the ``torch`` extra) fails the install instead of downloading it. The
view lives outside the fresh venv, and pip never uninstalls outside the environment it installs
into, so nothing can reach the dev venv through the symlinks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

DEV_SITE = Path(sysconfig.get_paths()["purelib"])
# What a view never holds: the editable install of the repo, pip (the dev venv's runs).
ALWAYS_LEFT_OUT = re.compile(
    r"^(spotrun|__editable__|pip)([-_.].*)?$"
    r"|\.pth$|^__pycache__$",
    re.IGNORECASE,
)
TORCH_FAMILY = re.compile(r"^(torch|torchgen|functorch|triton|nvidia|cuda)([-_.].*)?$", re.I)
S3_FAMILY = re.compile(r"^(boto3|botocore|s3transfer)([-_.].*)?$", re.I)


def view_of_dev_site(folder: Path, *, with_torch: bool, with_s3: bool = True) -> Path:
    """A folder of symlinks to the dev venv's packages, as described above."""
    folder.mkdir(parents=True)
    left_out = [family for family, kept in ((TORCH_FAMILY, with_torch), (S3_FAMILY, with_s3))
                if not kept]
    for entry in sorted(DEV_SITE.iterdir()):
        if ALWAYS_LEFT_OUT.search(entry.name):
            continue
        if any(family.match(entry.name) for family in left_out):
            continue
        (folder / entry.name).symlink_to(entry)
    return folder


def fresh_venv(where: Path, view: Path) -> Path:
    """A venv without pip (the dev venv's pip installs into it) that sees ``view``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(site) / "dev-packages-view.pth").write_text(f"{view}\n")
    return python


def pip_install(python: Path, requirement: str) -> subprocess.CompletedProcess[str]:
    """``pip install --no-index REQUIREMENT`` into the venv of ``python``, offline."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index",
         "--progress-bar", "off", requirement],
        capture_output=True, text=True, env=clean_env(python),
    )


def clean_env(python: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the venv of ``python`` first on
    PATH and nothing that points a Python at the repository or the dev venv."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    dev_bin = str(Path(sys.executable).parent)
    kept = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != dev_bin]
    env["PATH"] = os.pathsep.join([str(python.parent), *kept])
    return env
