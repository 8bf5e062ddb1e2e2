"""``spotrun`` with an extra's packages unimportable, in a real process.

``python notorch.py sidecar`` runs the real sidecar where any ``import torch`` fails as a missing
module does (ModuleNotFoundError naming it, and who asked); ``--without boto3,botocore`` makes
those unimportable instead; ``-c CODE`` runs CODE there instead of the ``spotrun`` command.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class Unimportable(importlib.abc.MetaPathFinder):
    def __init__(self, names: Sequence[str] = ("torch",)) -> None:
        self.names = tuple(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in self.names:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} ({top} is unimportable in this process)",
                name=fullname,
            )
        return None


def main(argv: list[str]) -> int:
    names = ["torch"]
    if argv[:1] == ["--without"]:
        names, argv = argv[1].split(","), argv[2:]
    sys.meta_path.insert(0, Unimportable(names))
    if argv[:1] == ["-c"]:
        exec(compile(argv[1], "<notorch -c>", "exec"), {"__name__": "__main__"})
        return 0
    from spotrun.cli import main as spotrun

    return spotrun(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
