"""The wheel and sdist as a user gets them: ``python -m build``, ``twine check``, then the wheel
installed into fresh venvs with no repository on the path (each command runs from a folder
outside the repo, and each test checks that ``spotrun.__file__`` is inside its new venv).

torch is not downloaded again: a fresh venv sees the dev venv's installed packages through a
view of symlinks that leaves out the repo's editable ``spotrun`` (``freshvenv.py`` says how),
and pip installs the wheel offline (``--no-index``), so every dependency the wheel declares
must resolve from that view. The ``s3`` venv's view has no torch at all: if the base or the
``s3`` extra required torch, its install would fail; there ``spotrun pull`` and ``verify`` run
against the local S3 server. The ``torch`` venv's view has no boto3: the library and
``spotrun chaos`` must work without it.
"""

from __future__ import annotations

import email.parser
import signal
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from spotrun import Checkpointer, layout, mirror
from spotrun.localstore import LocalStore
from spotrun.reader import load_verified
from spotrun.s3store import S3Store
from spotrun.version import __version__
from tests.integration.freshvenv import clean_env, fresh_venv, pip_install, view_of_dev_site
from tests.integration.s3util import Sidecar, run_env, wait_for

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

TINY = """
import random, numpy as np, torch, spotrun
random.seed(0)
np.random.seed(0)
torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with spotrun.Checkpointer(model=model, optimizer=opt, interval_steps=5) as ckpt:
    ckpt.restore()
    for _ in range(ckpt.global_step, 40):
        opt.zero_grad()
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        ckpt.step()
"""


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist) of the working tree; the wheel is built from the sdist (build's default),
    without build isolation (the dev venv's setuptools: offline)."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        capture_output=True, text=True,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    wheels, sdists = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return wheels[0], sdists[0]


def _run(python: Path, cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """A command of the venv of ``python`` (``python`` itself when args start with -c/-m)."""
    command = [str(python), *args] if args[0].startswith("-") else [
        str(python.parent / args[0]), *args[1:]]
    env = clean_env(python)
    env.update(extra)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)


def _installed(tmp: Path, wheel: Path, extras: str, *, with_torch: bool, with_s3: bool) -> Path:
    """A fresh venv with ``wheel[extras]``; returns its python, checked to import its own
    ``spotrun`` (not the repo's)."""
    view = view_of_dev_site(tmp / "view", with_torch=with_torch, with_s3=with_s3)
    python = fresh_venv(tmp / "venv", view)
    done = pip_install(python, f"{wheel}[{extras}]")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    where = _run(python, tmp, "-c", "import spotrun; print(spotrun.__file__)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(tmp / "venv"), where.stdout
    return python


def test_the_wheel_and_sdist_pass_twine_check_and_hold_every_package(
    dist: tuple[Path, Path],
) -> None:
    wheel, sdist = dist
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
        capture_output=True, text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert wheel.name == f"spotrun-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("spotrun/checkpointer.py", "spotrun/sidecar.py", "spotrun/execwrap.py",
                   "spotrun/py.typed", "spotrun_operator/handlers.py", "spotrun_operator/py.typed"):
        assert module in names, f"the wheel lacks {module}"
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)
    info = zipfile.ZipFile(wheel).read(f"spotrun-{__version__}.dist-info/METADATA").decode()
    meta = email.parser.Parser().parsestr(info)
    assert meta["Version"] == __version__ and meta["License-Expression"] == "Apache-2.0"
    required = meta.get_all("Requires-Dist") or []
    base = [r for r in required if "extra ==" not in r]
    assert not any(r.startswith(("torch", "boto3", "kopf")) for r in base), base
    assert set(meta.get_all("Provides-Extra") or []) >= {"torch", "s3", "operator"}
    with tarfile.open(sdist) as tar:
        root = f"spotrun-{__version__}/"
        assert {root + "LICENSE", root + "pyproject.toml", root + "README.md"} <= set(
            tar.getnames())


def test_the_wheel_with_torch_shows_its_version_and_runs_chaos_identical(
    dist: tuple[Path, Path], tmp_path: Path
) -> None:
    """``[torch,operator]`` with no boto3 in sight: the library and chaos need none."""
    python = _installed(tmp_path, dist[0], "torch,operator", with_torch=True, with_s3=False)
    no_boto3 = _run(python, tmp_path, "-c", "import boto3")
    assert "No module named 'boto3'" in no_boto3.stderr, no_boto3.stderr
    library = _run(python, tmp_path, "-c",
                   "import sys; from spotrun import Checkpointer; print('boto3' in sys.modules)")
    assert (library.returncode, library.stdout.strip()) == (0, "False"), library.stderr
    s3_uri = _run(python, tmp_path, "spotrun", "ls", "s3://bucket/jobs/a")
    assert s3_uri.returncode == 1, s3_uri.stderr
    assert "pip install 'spotrun[s3]'" in s3_uri.stderr and "Traceback" not in s3_uri.stderr

    version = _run(python, tmp_path, "spotrun", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"spotrun {__version__}")

    script = tmp_path / "tiny.py"
    script.write_text(TINY)
    chaos = _run(python, tmp_path, "spotrun", "chaos", "--kills", "1", "--seed", "1",
                 "--workdir", str(tmp_path / "chaos"), "--timeout", "300", "--",
                 str(python), str(script))
    assert chaos.returncode == 0, chaos.stdout + chaos.stderr
    assert "IDENTICAL: the whole final checkpoint (step 40)" in chaos.stdout, chaos.stdout

    operator = _run(python, tmp_path, "-m", "spotrun_operator", "--help")
    assert operator.returncode == 0 and "--namespace" in operator.stdout, operator.stderr


def _save(directory: Path, step: int) -> None:
    """A committed checkpoint of ``step`` (made by this process, which has torch)."""
    with Checkpointer(directory, model=torch.nn.Linear(4, 4), handle_signals=False) as ckpt:
        ckpt.global_step = step - 1
        ckpt.step()
        ckpt.save(wait=True)


@pytest.mark.usefixtures("s3_credentials")
def test_the_s3_extra_without_torch_imports_spotrun_and_its_sidecar_restores(
    dist: tuple[Path, Path], tmp_path: Path, s3: Any, s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    python = _installed(tmp_path, dist[0], "s3", with_torch=False, with_s3=True)
    no_torch = _run(python, tmp_path, "-c", "import torch")
    assert "No module named 'torch'" in no_torch.stderr, no_torch.stderr
    imported = _run(python, tmp_path, "-c",
                    "import sys, spotrun, spotrun.sidecar, spotrun.execwrap; "
                    "print(spotrun.__version__, 'torch' in sys.modules)")
    assert imported.stdout.split() == [__version__, "False"], imported.stderr
    helped = _run(python, tmp_path, "spotrun", "sidecar", "--help")
    assert helped.returncode == 0, helped.stderr
    library = _run(python, tmp_path, "-c", "import spotrun; spotrun.Checkpointer")
    assert "pip install 'spotrun[torch]'" in library.stderr, library.stderr

    remote = S3Store(s3_bucket, "jobs/wheel", endpoint=s3.endpoint_url)
    earlier = tmp_path / "earlier-attempt"
    _save(earlier, 7)
    mirror.upload(LocalStore(earlier), layout.step_dirname(7), remote)
    uri = f"s3://{s3_bucket}/jobs/wheel"
    pulled = _run(python, tmp_path, "spotrun", "pull", uri, str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.rstrip().endswith(f": {layout.step_dirname(7)}"), pulled.stdout
    assert "torch is not installed" in pulled.stderr and "Traceback" not in pulled.stderr
    assert load_verified(LocalStore(tmp_path / "pulled"), layout.step_dirname(7)).step == 7
    verified = _run(python, tmp_path, "spotrun", "verify", uri)
    assert (verified.returncode, verified.stdout) == (0, f"{layout.step_dirname(7)}: ok\n")
    chaos = _run(python, tmp_path, "spotrun", "chaos", "--", "true")
    assert chaos.returncode == 1 and "pip install 'spotrun[torch]'" in chaos.stderr, chaos.stderr

    node = tmp_path / "node"
    env = clean_env(python, run_env(s3.env(), node, f"s3://{s3_bucket}/jobs/wheel"))
    monkeypatch.chdir(tmp_path)  # the sidecar starts outside the repo
    sidecar = Sidecar(env, tmp_path, command=[str(python.parent / "spotrun"), "sidecar"])
    try:
        wait_for(sidecar.started, timeout=120, what="the installed sidecar's startup probe")
        restored = [name for _, name in layout.newest_first(LocalStore(node).names())]
        assert restored == [layout.step_dirname(7)], sidecar.output()
        sidecar.proc.send_signal(signal.SIGTERM)
        assert sidecar.proc.wait(timeout=60) == 0, sidecar.output()
    finally:
        sidecar.kill()
    assert "Traceback" not in sidecar.output(), sidecar.output()
