"""The process node runs real pods: init containers, native sidecars, mains, env, status."""

from __future__ import annotations

import json

import pytest
from e2e_support import phase_is, pod, sh, wait_for

from localcluster import procs

pytestmark = pytest.mark.e2e

SHARED = {"name": "shared", "mountPath": "/spotrun-e2e/shared"}


def test_init_sidecar_and_main_share_an_empty_dir(cluster, namespace):
    core = cluster.core()
    port = procs.free_port()
    init = {
        "name": "init",
        "command": sh("echo from-init > /spotrun-e2e/shared/init.txt"),
        "volumeMounts": [SHARED],
    }
    sidecar = {  # a native sidecar: ready once its exec startup probe passes
        "name": "sidecar",
        "restartPolicy": "Always",
        "command": sh(
            "trap 'echo sidecar saw: $(cat /spotrun-e2e/shared/main.txt); exit 0' TERM; "
            "sleep 1; touch /spotrun-e2e/shared/sidecar-started; sleep 3600 & wait $!"
        ),
        "startupProbe": {
            "exec": {"command": ["test", "-f", "/spotrun-e2e/shared/sidecar-started"]},
            "periodSeconds": 1,
        },
        "volumeMounts": [SHARED],
    }
    server = {  # a second sidecar, started only once the first one's probe passed
        "name": "server",
        "restartPolicy": "Always",
        "command": sh(
            "test -f /spotrun-e2e/shared/sidecar-started || touch /spotrun-e2e/shared/too-early; "
            f"exec python -m http.server --bind 127.0.0.1 {port}"
        ),
        "ports": [{"name": "http", "containerPort": port}],
        "startupProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
        "volumeMounts": [SHARED],
    }
    main = {
        "name": "main",
        "command": sh(
            "set -e; test \"$(cat /spotrun-e2e/shared/init.txt)\" = from-init; "
            "test -f /spotrun-e2e/shared/sidecar-started; test ! -e /spotrun-e2e/shared/too-early; "
            f"python -c 'import urllib.request as u; u.urlopen(\"http://127.0.0.1:{port}/\")'; "
            "echo written-by-main > /spotrun-e2e/shared/main.txt"
        ),
        "volumeMounts": [SHARED],
    }
    manifest = pod("shared-dir", [main], [init, sidecar, server],
                   volumes=[{"name": "shared", "emptyDir": {}}], restartPolicy="Never")
    core.create_namespaced_pod(namespace, manifest)

    done = wait_for(lambda: phase_is(core, namespace, "shared-dir", "Succeeded", "Failed"),
                    "the pod to finish", timeout=90)
    def log(container):  # through the API server, as `kubectl logs` reads it
        return core.read_namespaced_pod_log("shared-dir", namespace, container=container)

    assert done.status.phase == "Succeeded", log("main")
    assert done.spec.node_name  # placed by the real scheduler
    inits = {s.name: s for s in done.status.init_container_statuses}
    assert inits["init"].state.terminated.exit_code == 0
    assert inits["sidecar"].state.terminated.exit_code == 0
    (main_status,) = done.status.container_statuses
    assert main_status.state.terminated.exit_code == 0
    assert main_status.state.terminated.reason == "Completed"
    assert "sidecar saw: written-by-main" in log("sidecar")


def test_env_is_resolved_and_the_termination_message_reported(cluster, namespace):
    core = cluster.core()
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"},
                                              "stringData": {"key": "s3cr3t"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"mode": "fast"}})
    env = [
        {"name": "PLAIN", "value": "plain"},
        {"name": "EXPANDED", "value": "$(PLAIN)-expanded"},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]
    script = (
        "import json, os; keys = ['PLAIN', 'EXPANDED', 'SECRET', 'MODE', 'POD_NAME', 'NODE'];"
        "open('/dev/termination-log', 'w').write(json.dumps({k: os.environ[k] for k in keys}));"
        "raise SystemExit(3)"
    )
    main = {"name": "main", "command": ["python", "-c", script], "env": env}
    core.create_namespaced_pod(namespace, pod("env", [main], restartPolicy="Never"))

    done = wait_for(lambda: phase_is(core, namespace, "env", "Succeeded", "Failed"),
                    "the pod to finish")
    assert done.status.phase == "Failed"
    terminated = done.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"
    assert json.loads(terminated.message) == {
        "PLAIN": "plain", "EXPANDED": "plain-expanded", "SECRET": "s3cr3t", "MODE": "fast",
        "POD_NAME": "env", "NODE": done.spec.node_name,
    }


def test_restart_policy_on_failure_restarts_until_success(cluster, namespace, process_node):
    core = cluster.core()
    main = {
        "name": "main",
        "command": sh("if [ -f /spotrun-e2e/shared/once ]; then echo second run; exit 0; fi; "
                      "touch /spotrun-e2e/shared/once; echo first run; exit 1"),
        "volumeMounts": [SHARED],
    }
    core.create_namespaced_pod(namespace, pod(
        "flaky", [main], restartPolicy="OnFailure", volumes=[{"name": "shared", "emptyDir": {}}]
    ))
    done = wait_for(lambda: phase_is(core, namespace, "flaky", "Succeeded", "Failed"),
                    "the pod to finish")
    status = done.status.container_statuses[0]
    assert done.status.phase == "Succeeded"
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    # each run's log is its own file under <state>/node/logs/
    assert process_node.log(namespace, "flaky", "main", restart=0) == "first run\n"
    assert process_node.log(namespace, "flaky", "main") == "second run\n"


def test_a_container_without_command_waits_with_a_clear_reason(cluster, namespace):
    core = cluster.core()
    core.create_namespaced_pod(namespace, pod("no-command", [{"name": "main"}],
                                              restartPolicy="Never"))

    def waiting():
        p = phase_is(core, namespace, "no-command", "Pending")
        statuses = (p.status.container_statuses or []) if p else []
        return statuses and statuses[0].state.waiting

    reason = wait_for(lambda: (w := waiting()) and w.reason == "CreateContainerError" and w,
                      "the container to be reported as not creatable")
    assert "command" in reason.message


def test_a_failing_liveness_probe_kills_the_container(cluster, namespace):
    core = cluster.core()
    main = {
        "name": "main",
        "command": sh("sleep 3600"),
        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1,
                          "failureThreshold": 2},
    }
    core.create_namespaced_pod(namespace, pod("unhealthy", [main], restartPolicy="Never"))
    done = wait_for(lambda: phase_is(core, namespace, "unhealthy", "Failed"), "the pod to fail")
    assert done.status.container_statuses[0].state.terminated.exit_code == 137
