"""The garbage collector of the real controller manager deletes owned pods."""

from __future__ import annotations

import pytest
from e2e_support import pod, read_pod, sh, wait_for

pytestmark = pytest.mark.e2e


def test_deleting_the_owner_deletes_its_pods(cluster, namespace):
    core = cluster.core()
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    for name in ("owned-1", "owned-2"):
        worker = {"name": "main", "command": sh("trap 'exit 0' TERM; sleep 3600 & wait $!")}
        manifest = pod(name, [worker])
        manifest["metadata"]["ownerReferences"] = [ref]
        core.create_namespaced_pod(namespace, manifest)

    core.delete_namespaced_config_map("owner", namespace)

    for name in ("owned-1", "owned-2"):
        wait_for(lambda n=name: read_pod(core, namespace, n) is None, f"pod {name} to be collected")
