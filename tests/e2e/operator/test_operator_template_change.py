"""Editing spec.template of a running job: the running attempt saves on SIGTERM, the next one
restores that step and runs with the new args; no preemption, no failure; the status says
which generation runs. Sidecar port 18780."""

from __future__ import annotations

import re

import pytest
from e2e_support import wait_for
from operator_support import (
    ARGS,
    PLURAL,
    events_of,
    rtj_body,
    running_on,
    s3_checkpoint,
    status_of,
    steps_in_s3,
    submit,
    trainer,
)

pytestmark = pytest.mark.e2e

# A real trainer taking --lr over its restored state the README's way, saying what it did.
TRAINER = """
import os, sys, time, torch, spotrun
lr = float(sys.argv[sys.argv.index("--lr") + 1])
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=lr)
x, y = torch.randn(64, 4), torch.randn(64, 1)
with spotrun.Checkpointer(model=model, optimizer=opt, interval_steps=10, keep=100) as ckpt:
    start = ckpt.restore()
    saved_lr = opt.param_groups[0]["lr"]
    if start:
        for group in opt.param_groups:
            group["lr"] = lr
    print(f"trainer: restored step {start}, lr {saved_lr} in the checkpoint, "
          f"training with lr {opt.param_groups[0]['lr']}", flush=True)
    while True:
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        ckpt.step(metrics={"loss": loss.item()})
        time.sleep(0.05)
"""


def command(lr: str) -> list[str]:
    return ["python", "-c", TRAINER, "--lr", lr]


def test_editing_the_template_saves_and_restarts_from_that_step_with_the_new_args(
    cluster, namespace, operator, s3, s3_bucket
):
    body = rtj_body("tpl", trainer(command("0.01")),
                    s3_checkpoint(s3_bucket, "tpl", s3.endpoint_url, 18780),
                    terminationGracePeriodSeconds=30, backoffLimit=0,
                    spot={"maxPreemptions": 0})
    core, custom = submit(cluster, namespace, s3, body)
    wait_for(lambda: running_on(core, namespace, "tpl-1"), "tpl-1 to run", timeout=120)
    wait_for(lambda: ((status_of(custom, namespace, "tpl").get("lastCheckpoint") or {})
                      .get("step") or 0) >= 20, "attempt 1 to save twice", timeout=120)
    first = status_of(custom, namespace, "tpl")
    assert first["templateGeneration"] == 1

    patch = {"spec": {"template": {"spec": {"containers": [trainer(command("0.5"))]}}}}
    edited = custom.patch_namespaced_custom_object(*ARGS, namespace, PLURAL, "tpl", patch)
    generation = edited["metadata"]["generation"]
    assert generation == 2

    def restarted() -> dict | None:
        st = status_of(custom, namespace, "tpl")
        return st if st.get("attempt") == 2 and st.get("templateGeneration") == 2 else None

    st = wait_for(restarted, "attempt 2 to run generation 2", timeout=180)
    wait_for(lambda: running_on(core, namespace, "tpl-2"), "tpl-2 to run", timeout=120)

    # the old attempt's end, as recorded: the step its SIGTERM save made durable
    def recorded_end() -> str | None:
        return next((m for r, m in events_of(core, namespace, "tpl")
                     if r == "TemplateChanged" and "stopped for a changed" in m), None)

    end = wait_for(recorded_end, "the TemplateChanged Event of attempt 1's end", timeout=60)
    assert "generation 1 -> 2" in end, end
    found = re.search(r"last checkpoint step (\d+) \(final save made it\)", end)
    assert found, end
    saved = int(found.group(1))
    assert saved >= 20 and saved in steps_in_s3(s3, s3_bucket, "tpl")
    stopping = [m for r, m in events_of(core, namespace, "tpl")
                if r == "TemplateChanged" and "gets SIGTERM and saves" in m]
    assert stopping and "generation 1 -> 2" in stopping[0]

    # the next attempt restored exactly that step and trains with the new learning rate
    def said() -> str | None:
        log = core.read_namespaced_pod_log("tpl-2", namespace, container="trainer")
        return log if "trainer: restored step" in log else None

    log = wait_for(said, "tpl-2's trainer to say what it restored", timeout=120)
    assert f"trainer: restored step {saved}, lr 0.01 in the checkpoint, training with lr 0.5" \
        in log, log

    st = status_of(custom, namespace, "tpl")
    assert st["preemptions"] == 0 and st["failures"] == 0, st
    assert st["observedGeneration"] == 2 and st["templateGeneration"] == 2
    assert st["phase"] in ("Restarting", "Running"), st
    reasons = [r for r, _ in events_of(core, namespace, "tpl")]
    assert "Preempted" not in reasons and "AttemptFailed" not in reasons, reasons
    pod = core.read_namespaced_pod("tpl-2", namespace)
    assert pod.metadata.annotations["spotrun.dev/generation"] == "2"
