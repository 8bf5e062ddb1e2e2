"""`hack/cluster` on kind (the default): what it makes of the hack/kind scripts' output, the
arguments it passes them, and what `up`/`env` do with stand-in scripts that print what the real
ones print (the real ones need Docker: tests/kind runs those)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from localcluster import cli, kindcluster
from localcluster.kindcluster import KindError, Running

pytestmark = pytest.mark.unit

UP_OUT = (
    "export KUBECONFIG=/c/kind/cluster/kubeconfig"
    " DOCKER_HOST=unix:///c/kind/docker/docker.sock\n"
)
S3_OUT = (
    "export AWS_ENDPOINT_URL_S3=http://127.0.0.1:5002"
    " SPOTRUN_POD_S3_ENDPOINT=http://172.18.0.5:7070 AWS_ACCESS_KEY_ID=spotrun-local"
    " AWS_SECRET_ACCESS_KEY=spotrun-local-secret"
    " AWS_DEFAULT_REGION=us-east-1 SPOTRUN_TEST_BUCKET=spotrun-test\n"
)
IMAGES_OUT = (
    "python=spotrun.local/python:3.11.2-bookworm-aaa\ntorch=spotrun.local/torch:2.15.0-bbb\n"
    "golang=spotrun.local/golang:1.26.8-bookworm-ccc\noperator=spotrun.local/operator:0.1.0-d1\n"
    "sidecar=spotrun.local/sidecar:0.1.0-e2\ntrainer=spotrun.local/trainer:0.1.0-f3\n"
)
PUSHED = {
    "operator": "localhost:5001/spotrun/operator:0.1.0-d1",
    "sidecar": "localhost:5001/spotrun/sidecar:0.1.0-e2",
    "trainer": "localhost:5001/spotrun/trainer:0.1.0-f3",
}


def test_kind_is_the_default_and_the_process_node_is_chosen_by_flag_or_spotrun_cluster() -> None:
    assert kindcluster.backend(False, False, None) == "kind"
    assert kindcluster.backend(False, False, "") == "kind"
    assert kindcluster.backend(False, False, "process") == "process"
    assert kindcluster.backend(False, True, None) == "process"
    assert kindcluster.backend(True, False, "process") == "kind"  # a flag wins
    assert kindcluster.backend(False, True, "kind") == "process"
    with pytest.raises(ValueError, match="SPOTRUN_CLUSTER=kubernetes: set it to kind or process"):
        kindcluster.backend(False, False, "kubernetes")
    with pytest.raises(ValueError, match="--kind and --process contradict each other"):
        kindcluster.backend(True, True, None)


def test_each_cluster_name_keeps_its_own_state_folder() -> None:
    state = Path("/c/kind")
    assert kindcluster.cluster_state_dir(state, "spotrun") == state / "cluster"
    assert kindcluster.cluster_state_dir(state, "smoke") == state / "cluster-smoke"
    script = (Path(kindcluster.KIND_DIR) / "cluster.sh").read_text()
    assert 'CLUSTER_STATE="$KIND_STATE/cluster-$NAME"' in script  # the scripts agree


def test_export_lines_of_up_and_s3_env_become_one_dict_and_other_lines_are_skipped() -> None:
    found = kindcluster.parse_exports("[kind:up] progress on stdout by mistake\n" + UP_OUT + S3_OUT)
    assert found["KUBECONFIG"] == "/c/kind/cluster/kubeconfig"
    assert found["DOCKER_HOST"] == "unix:///c/kind/docker/docker.sock"
    assert found["SPOTRUN_POD_S3_ENDPOINT"] == "http://172.18.0.5:7070"
    assert found["SPOTRUN_TEST_BUCKET"] == "spotrun-test"
    assert len(found) == 8
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        kindcluster.parse_exports("export KUBECONFIG\n")


def test_image_and_push_output_map_each_name_to_its_reference() -> None:
    built = kindcluster.parse_assignments(IMAGES_OUT)
    assert built["operator"] == "spotrun.local/operator:0.1.0-d1" and len(built) == 6
    pushed = kindcluster.parse_pushed("\n".join(PUSHED.values()) + "\n")
    assert pushed == PUSHED
    assert kindcluster.parse_pushed("pushed in 3s\nlocalhost:5001/other/x:1\n") == {}
    with pytest.raises(KindError, match="hack/kind/images printed no trainer"):
        kindcluster.require(built | {"trainer": ""}, kindcluster.IMAGES, "hack/kind/images")


def test_node_options_and_preemptions_map_to_the_scripts_arguments() -> None:
    assert kindcluster.up_args(spot=2, on_demand=1) == ["--on-demand", "1", "--spot", "2"]
    assert cli.node_counts(None, None, kind=True) == (1, 1)
    assert cli.node_counts(None, None, kind=False) == (3, 1)
    assert cli.node_counts(0, 2, kind=True) == (0, 2)
    with pytest.raises(ValueError, match="negative"):
        kindcluster.up_args(-1, 1)
    assert kindcluster.preempt_args("spotrun-worker2", 5.0, False) == [
        "spotrun-worker2", "--notice", "5"]
    assert kindcluster.preempt_args("spotrun-worker2", 0, False) == [
        "spotrun-worker2", "--notice", "0"]
    assert kindcluster.preempt_args("spotrun-worker2", 0, True) == ["spotrun-worker2", "--abrupt"]
    assert kindcluster.preempt_args("spotrun-worker2", 0, False, shutdown=True) == [
        "spotrun-worker2", "--shutdown"]
    with pytest.raises(ValueError, match="two different endings"):
        kindcluster.preempt_args("spotrun-worker2", 0, True, shutdown=True)
    with pytest.raises(ValueError, match="--shutdown gives no notice"):
        kindcluster.preempt_args("spotrun-worker2", 5, False, shutdown=True)
    with pytest.raises(ValueError, match="whole seconds"):
        kindcluster.preempt_args("spotrun-worker2", 2.5, False)
    with pytest.raises(ValueError, match="--abrupt gives no notice"):
        kindcluster.preempt_args("spotrun-worker2", 5, True)


def test_the_chart_gets_the_pushed_images_explicitly() -> None:
    assert kindcluster.helm_image_values(PUSHED) == [
        "--set", "image.repository=localhost:5001/spotrun/operator",
        "--set", "image.tag=0.1.0-d1",
        "--set", "sidecar.image=localhost:5001/spotrun/sidecar:0.1.0-e2",
    ]


def test_env_exports_hack_cluster_envs_names_then_the_pods_endpoint_and_the_images() -> None:
    pairs = kindcluster.env_pairs(
        kindcluster.parse_exports(UP_OUT), kindcluster.parse_exports(S3_OUT), PUSHED
    )
    assert [name for name, _ in pairs] == [
        "DOCKER_HOST", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION", "SPOTRUN_TEST_BUCKET", "SPOTRUN_POD_S3_ENDPOINT",
        "SPOTRUN_OPERATOR_IMAGE", "SPOTRUN_SIDECAR_IMAGE", "SPOTRUN_TRAINER_IMAGE",
    ]
    assert dict(pairs)["SPOTRUN_TRAINER_IMAGE"] == PUSHED["trainer"]


def test_what_ran_before_is_read_from_the_running_containers() -> None:
    names = ["spotrun-control-plane", "spotrun-worker", "spotrun-s3", "other-registry"]
    assert kindcluster.running_from(names, True, "spotrun") == Running(True, True, False, True)
    assert kindcluster.running_from(names, True, "demo") == Running(True, False, False, False)
    assert kindcluster.cluster_name({}) == "spotrun"
    assert kindcluster.cluster_name({"SPOTRUN_KIND_CLUSTER": "demo"}) == "demo"


# --- the commands, on stand-in scripts -------------------------------------------------------


def fake_kind_dir(tmp_path: Path, fail: str = "") -> Path:
    """hack/kind stand-ins: each logs its arguments and prints what the real one prints on
    stdout; FAIL names one that says `[kind:...] FAILED` on stderr and exits 86."""
    kind_dir = tmp_path / "kind"
    kind_dir.mkdir()
    log = tmp_path / "calls.log"
    outputs = {
        "up": UP_OUT,
        "registry": "\n".join(PUSHED.values()) + "\n",  # `push` prints these; `up` nothing
        "s3": S3_OUT,  # `env` prints this; `up` nothing
        "images": IMAGES_OUT,
        "preempt": "", "add-node": "", "down": "",
    }
    for name, out in outputs.items():
        body = f'echo "{name} $*" >>{log}\n'
        if name == fail:
            body += f'echo "[kind:{name}] FAILED: it broke" >&2\nexit 86\n'
        elif name in ("registry", "s3"):
            wanted = "push" if name == "registry" else "env"
            body += f'[ "$1" = {wanted} ] && cat <<"EOF"\n{out}EOF\nexit 0\n'
        else:
            body += f'cat <<"EOF"\n{out}EOF\n'
        script = kind_dir / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return kind_dir


@pytest.fixture
def fake_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(kindcluster, "KIND_DIR", fake_kind_dir(tmp_path))
    monkeypatch.setenv("SPOTRUN_KIND_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("SPOTRUN_CLUSTER", raising=False)
    return tmp_path / "calls.log"


def test_up_runs_the_scripts_in_order_and_env_then_exports_what_pods_and_the_host_need(
    fake_kind: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up"]) == 0  # kind unless --process
    assert fake_kind.read_text().splitlines() == [
        "up --on-demand 1 --spot 1",
        "registry up",
        "s3 up",
        "images operator sidecar trainer",
        "registry push spotrun.local/operator:0.1.0-d1 spotrun.local/sidecar:0.1.0-e2 "
        "spotrun.local/trainer:0.1.0-f3",
    ]
    capsys.readouterr()
    assert cli.main(["env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.startswith("export ") for line in lines), lines
    exported = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert exported["KUBECONFIG"] == "/c/kind/cluster/kubeconfig"
    assert exported["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:5002"
    assert exported["SPOTRUN_POD_S3_ENDPOINT"] == "http://172.18.0.5:7070"
    assert exported["SPOTRUN_TEST_BUCKET"] == "spotrun-test"
    assert exported["SPOTRUN_OPERATOR_IMAGE"] == PUSHED["operator"]
    assert exported["SPOTRUN_SIDECAR_IMAGE"] == PUSHED["sidecar"]
    assert exported["SPOTRUN_TRAINER_IMAGE"] == PUSHED["trainer"]


def test_node_options_preempt_add_node_and_down_reach_the_scripts(
    fake_kind: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTRUN_CLUSTER", "kind")
    assert cli.main(["up", "--spot", "2", "--on-demand", "0"]) == 0
    assert cli.main(["preempt", "spotrun-worker2", "--notice", "5"]) == 0
    assert cli.main(["preempt", "spotrun-worker2", "--abrupt"]) == 0
    assert cli.main(["preempt", "spotrun-worker2", "--shutdown"]) == 0
    assert cli.main(["add-node", "spotrun-worker2"]) == 0
    assert cli.main(["down"]) == 0
    assert cli.main(["down", "--engine"]) == 0
    calls = fake_kind.read_text().splitlines()
    assert calls[0] == "up --on-demand 0 --spot 2"
    assert calls[-6:] == [
        "preempt spotrun-worker2 --notice 5", "preempt spotrun-worker2 --abrupt",
        "preempt spotrun-worker2 --shutdown", "add-node spotrun-worker2", "down ",
        "down --engine",
    ]


def test_bad_requests_fail_with_one_line_before_any_script_runs(
    fake_kind: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli.main(["--kind", "preempt", "spotrun-worker2", "--notice", "2.5"]) == 2
    assert "whole seconds" in capsys.readouterr().err
    assert cli.main(["--kind", "up", "--s3-only"]) == 2
    assert "--s3-only and --node-grace are the process node's" in capsys.readouterr().err
    assert cli.main(["add-node"]) == 2
    assert "hack/cluster add-node NODE" in capsys.readouterr().err
    # the process node has no abrupt loss
    assert cli.main(["--process", "preempt", "spot-1", "--abrupt"]) == 2
    assert "--abrupt is kind's, not the process node's" in capsys.readouterr().err
    assert cli.main(["--process", "preempt", "spot-1", "--shutdown"]) == 2
    assert "--shutdown is kind's, not the process node's" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not allowed with argument --kind
        cli.main(["--kind", "--process", "status"])
    assert "not allowed with argument" in capsys.readouterr().err
    monkeypatch.setenv("SPOTRUN_CLUSTER", "kube")
    assert cli.main(["status"]) == 2
    assert "set it to kind or process" in capsys.readouterr().err
    assert not fake_kind.exists()


def test_env_before_up_and_a_failing_script_say_what_to_do(
    tmp_path: Path, fake_kind: Path, capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert cli.main(["--kind", "env"]) == 1
    assert "run `hack/cluster up` first" in capfd.readouterr().err
    failing = tmp_path / "failing"
    failing.mkdir()
    monkeypatch.setattr(kindcluster, "KIND_DIR", fake_kind_dir(failing, fail="images"))
    assert cli.main(["--kind", "up"]) == 1
    err = capfd.readouterr().err
    assert "[kind:images] FAILED: it broke" in err  # the script's own line passes through
    assert "hack/kind/images operator sidecar trainer failed (exit 86)" in err
    assert not kindcluster.state_path().exists()  # env still says: up first
