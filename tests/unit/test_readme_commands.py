"""Every shell command in README.md is run by a test, or listed here with why it cannot run.

A command ``By(test, tokens)`` is run by that test: the test must exist and its file must hold
the tokens that make it the README's command. ``Here(...)`` commands are run literally, as
the README writes them, by the named test. ``NotHere(reason)``: cannot run on this machine.
"""

from __future__ import annotations

import ast
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


@dataclass(frozen=True)
class By:
    test: str  # "path::function"
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class NotHere:
    reason: str


QUICKSTART = ("tests/kind/test_quickstart_on_kind.py::"
              "test_readme_quickstart_then_helm_upgrade_mid_run_then_uninstall")
RELEASE = ("tests/kind/test_release_on_kind.py::"
           "test_the_published_chart_and_install_yaml_install_the_operator_as_the_readme_says")
CLI = "tests/integration/test_readme_cli.py::test_the_cli_block_runs_as_written"
MANIFESTS = "tests/kind/test_install_on_kind.py"
WHEEL = "tests/integration/test_wheel.py"
HACK_CLUSTER = ("tests/kind/test_hack_cluster_on_kind.py::"
                "test_the_readme_hack_cluster_commands_drive_the_kind_cluster_and_down_leaves_nothing")

COMMANDS: dict[str, By | NotHere] = {
    "helm install spotrun charts/spotrun --namespace spotrun-system --create-namespace":
        By(QUICKSTART, ("README",)),
    # The published path: .github/workflows/release.yml pushes the chart and attaches
    # install.yaml (tests/unit/test_readme_published_install.py checks the names match); the
    # kind test publishes them the same way to its own registry (ghcr.io swapped for its host).
    "helm install spotrun oci://ghcr.io/spotrun/charts/spotrun --version 0.1.0 "
    "--namespace spotrun-system --create-namespace":
        By(RELEASE, ("readme_command", "PUBLISHED", '"push"', "--plain-http")),
    "kubectl apply -f https://github.com/spotrun/spotrun/releases/download/v0.1.0/install.yaml":
        By(RELEASE, ("readme_command", "https://github.com/", "install_yaml")),
    "kubectl apply -f manifests/crd.yaml -f manifests/install.yaml":
        By(f"{MANIFESTS}::test_kubectl_apply_of_install_yaml_as_written_runs_the_example_job",
           ("crd.yaml", "install.yaml", "apply")),
    "kubectl create secret generic s3-credentials "
    "--from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=...":
        By(QUICKSTART, ("README",)),
    "kubectl apply -f manifests/examples/job.yaml": By(QUICKSTART, ("README",)),
    "kubectl apply -f manifests/examples/s3-secret.yaml -f manifests/examples/multinode.yaml":
        By("tests/e2e/operator/test_operator_multinode.py::"
           "test_the_multinode_example_runs_as_written", ("multinode.yaml", "submit")),
    "kubectl get rtj digits-ddp -w": By(
        "tests/e2e/operator/test_operator_multinode.py::"
        "test_the_multinode_example_runs_as_written", ("digits-ddp", "finish")),
    "kubectl get rtj -w": By(QUICKSTART, ("README",)),
    "kubectl describe rtj digits": By(QUICKSTART, ("README",)),
    "make demo": By(
        "tests/kind/test_demo_on_kind.py::"
        "test_the_demo_on_kind_survives_a_notice_and_an_abrupt_loss_and_draws_its_report",
        ('"hack" / "demo"', "kind: the default"),
    ),
    # The same installs from the wheel built from this tree (PyPI serves only releases).
    "pip install 'spotrun[torch]'": By(
        f"{WHEEL}::test_the_wheel_with_torch_shows_its_version_and_runs_chaos_identical",
        ('"torch,operator"', "pip_install")),
    "pip install 'spotrun[s3]'": By(
        f"{WHEEL}::test_the_s3_extra_without_torch_imports_spotrun_and_its_sidecar_restores",
        ('"s3"', "pip_install")),
    "pip install 'spotrun[operator]'": By(
        f"{WHEEL}::test_the_wheel_with_torch_shows_its_version_and_runs_chaos_identical",
        ('"torch,operator"', '"spotrun_operator", "--help"')),
    "spotrun --version": By(
        f"{WHEEL}::test_the_wheel_with_torch_shows_its_version_and_runs_chaos_identical",
        ('"spotrun", "--version"',)),
    "make test": NotHere("it is the command that runs this test (CI runs it on a fresh clone)"),
    "python examples/digits/train.py --epochs 2": By(CLI, ("README",)),
    "spotrun ls spotrun-checkpoints": By(CLI, ("README",)),
    "spotrun verify spotrun-checkpoints": By(CLI, ("README",)),
    "spotrun inspect spotrun-checkpoints": By(CLI, ("README",)),
    "spotrun chaos --kills 2 --sigkill 1 -- python examples/digits/train.py --epochs 2": By(
        "tests/integration/test_chaos.py::"
        "test_digits_under_five_sigterms_and_two_sigkills_ends_bit_identical",
        ('"chaos"', "--kills", "--sigkill", "examples/digits/train.py", "--epochs"),
    ),
    # The README's block is read and run line by line, on kind, by one test.
    **{command: By(HACK_CLUSTER, ("readme_hack_cluster_lines",)) for command in (
        "hack/cluster up", 'eval "$(hack/cluster env)"', "hack/cluster preempt NODE",
        "hack/cluster add-node NODE", "hack/cluster down")},
}


def readme_commands(text: str) -> list[str]:
    """The commands of every ```sh block: continuations joined, comments and blanks dropped."""
    out: list[str] = []
    for block in re.findall(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text, re.S | re.M):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            command = re.sub(r"(^|\s)#.*$", "", line).strip()
            if command:
                out.append(re.sub(r"\s+", " ", command))
    return out



def readme_command(prefix: str) -> list[str]:
    """README.md's one command that starts with PREFIX, split as a shell would."""
    [command] = [c for c in readme_commands(README.read_text()) if c.startswith(prefix)]
    return shlex.split(command)

def _test_exists(spec: str) -> str:
    path, _, name = spec.partition("::")
    source = (REPO / path).read_text()
    functions = {
        node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)
    }
    assert name in functions, f"{spec}: no such test"
    return source


def test_every_readme_command_is_listed_and_nothing_listed_is_gone() -> None:
    commands = readme_commands(README.read_text())
    assert len(commands) >= 10
    missing = [c for c in commands if c not in COMMANDS]
    assert not missing, f"README commands no test runs (add them to COMMANDS): {missing}"
    stale = [c for c in COMMANDS if c not in commands]
    assert not stale, f"listed here but no longer in the README: {stale}"


@pytest.mark.parametrize("command", sorted(c for c, v in COMMANDS.items() if isinstance(v, By)))
def test_a_listed_test_runs_the_command(command: str) -> None:
    entry = COMMANDS[command]
    assert isinstance(entry, By)
    source = _test_exists(entry.test)
    for token in entry.tokens:
        assert token in source, f"{entry.test} does not hold {token!r} of `{command}`"


def test_the_reasons_a_command_cannot_run_here_are_given() -> None:
    for command, entry in COMMANDS.items():
        if isinstance(entry, NotHere):
            assert len(entry.reason) > 20, command


def test_the_block_parser_joins_continuations_and_drops_comments() -> None:
    text = "x\n```sh\nkubectl a \\\n  --b=1   # note\n# only a comment\n\nmake x\n```\n"
    assert readme_commands(text) == ["kubectl a --b=1", "make x"]
