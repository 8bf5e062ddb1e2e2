from __future__ import annotations

import pytest


@pytest.fixture
def s3_credentials(s3, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """This test process reads the bucket too: the standard AWS variables, as a pod has them."""
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
