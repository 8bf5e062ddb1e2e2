"""The KWOK configuration of tests/kind/karpenter.py: Karpenter's fake pods get no IP, so the
operator, which calls a Running pod's sidecar at its IP, never sends a packet off the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kind.karpenter import (
    ENDED,
    POD_TERMINATED,
    STAGES,
    deleted_once_ended,
    kwok_config,
    without_pod_ips,
)

pytestmark = pytest.mark.unit

# The shape of KWOK v0.8.0's pod-ready statusTemplate around its IP blocks (abridged).
POD_READY = """\
kind: Stage
metadata:
  name: pod-ready
spec:
  next:
    statusTemplate: |
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
"""


def test_the_pod_ready_stage_loses_its_pod_ips_and_keeps_the_rest() -> None:
    got = without_pod_ips(POD_READY)
    assert "podIP" not in got and "PodIPsWith" not in got
    assert "hostIP: {{ index . 0 | Quote }}" in got
    assert got.rstrip().endswith("phase: Running")
    assert yaml.safe_load(got)["metadata"]["name"] == "pod-ready"


def test_a_stage_without_the_block_or_with_it_unclosed_is_refused() -> None:
    with pytest.raises(ValueError, match="no pod IP block"):
        without_pod_ips(POD_READY.replace("{{ $podIPs := PodIPsWith", "{{ $ips := Other"))
    unclosed = POD_READY.replace("      {{ end }}\n      phase", "      phase")
    with pytest.raises(ValueError, match="never ends"):
        without_pod_ips(unclosed)


POD_DELETE = """\
kind: Stage
metadata:
  name: pod-delete
spec:
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"""


def test_only_ended_pods_are_deleted_and_a_running_one_is_ended_first() -> None:
    """A deleted pod that runs gets the kubelet's ending (POD_TERMINATED: phase Failed, its
    containers terminated with 143) before KWOK's pod-delete removes it; the operator reads
    that ending instead of waiting for one that never comes."""
    delete = yaml.safe_load(deleted_once_ended(POD_DELETE))
    assert delete["spec"]["selector"]["matchExpressions"][-1] == ENDED
    assert delete["spec"]["next"] == {"delete": True}
    terminated = POD_TERMINATED["spec"]
    assert ENDED["operator"] == "NotIn" and ENDED["values"] == ["Pending", "Running"]
    assert {"key": ".status.phase", "operator": "In", "values": ENDED["values"]} in terminated[
        "selector"
    ]["matchExpressions"]
    template = terminated["next"]["statusTemplate"]
    assert "phase: Failed" in template and "exitCode: 143" in template
    with pytest.raises(ValueError, match="does not select deleted pods"):
        deleted_once_ended(POD_DELETE.replace("Exists", "DoesNotExist"))


def test_the_config_holds_the_options_and_every_stage_adjusted(tmp_path: Path) -> None:
    for name in STAGES:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        texts = {"pod-ready": POD_READY, "pod-delete": POD_DELETE}
        path.write_text(texts.get(path.stem, f"kind: Stage\nmetadata: {{name: {path.stem}}}\n"))
    config = kwok_config(tmp_path)
    docs = list(yaml.safe_load_all(config))
    assert docs[0]["kind"] == "KwokConfiguration"
    assert docs[0]["options"]["nodeLeaseDurationSeconds"] == 40
    assert docs[0]["options"]["nodeLeaseParallelism"] > 0
    names = [d["metadata"]["name"] for d in docs[1:]]
    assert names == [*(Path(n).stem for n in STAGES), "pod-terminated"]
    assert "podIP" not in config
    assert docs[1 + names.index("pod-delete")]["spec"]["selector"]["matchExpressions"][-1] == ENDED
