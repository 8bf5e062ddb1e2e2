"""The digits example reads scikit-learn's bundled data without importing scikit-learn (a
resume pays for every import of the trainer's start), and gets exactly what
``sklearn.datasets.load_digits`` returns, so runs stay comparable with earlier ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


def test_the_example_loads_the_same_digits_as_scikit_learn() -> None:
    from sklearn.datasets import load_digits as sklearn_digits

    sys.path.insert(0, str(EXAMPLE))
    try:
        import train
    finally:
        sys.path.remove(str(EXAMPLE))
    images, labels = train.load_digits()
    expected = sklearn_digits()
    assert images.dtype == expected.images.dtype and labels.dtype == expected.target.dtype
    assert np.array_equal(images, expected.images)
    assert np.array_equal(labels, expected.target)


def test_loading_the_digits_imports_no_scikit_learn() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(EXAMPLE)!r}); import train; "
        "images, labels = train.load_digits(); assert images.shape == (1797, 8, 8); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"the example imported {out.stdout.strip()}"
