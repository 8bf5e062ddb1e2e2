"""The KWOK configuration of tests/kind/karpenter.py: Karpenter's fake pods get no IP, so the
operator, which calls a Running pod's sidecar at its IP, never sends a packet off the machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kind.karpenter import STAGES, kwok_config, without_pod_ips

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


def test_the_config_holds_the_options_and_every_stage_with_pod_ready_addressless(
    tmp_path: Path,
) -> None:
    for name in STAGES:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (
            POD_READY
            if name.endswith("pod-ready.yaml")
            else f"kind: Stage\nmetadata: {{name: {path.stem}}}\n"
        )
        path.write_text(text)
    docs = list(yaml.safe_load_all(kwok_config(tmp_path)))
    assert docs[0]["kind"] == "KwokConfiguration"
    assert docs[0]["options"]["nodeLeaseDurationSeconds"] == 40
    assert [d["metadata"]["name"] for d in docs[1:]] == [Path(n).stem for n in STAGES]
    assert "podIP" not in kwok_config(tmp_path)
