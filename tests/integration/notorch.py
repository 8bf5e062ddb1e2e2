"""``spotrun`` with torch unimportable: ``python notorch.py sidecar`` runs the real sidecar in
a process where any ``import torch`` raises ImportError (and says who tried)."""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "torch" or fullname.startswith("torch."):
            raise ImportError(f"torch is unimportable in this process (asked for {fullname!r})")
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, NoTorch())
    from spotrun.cli import main

    sys.exit(main(sys.argv[1:]))
