"""The version of the spotrun distribution: this line is the one place it is written.

pyproject.toml reads it (``[tool.setuptools.dynamic]``), ``spotrun --version`` and the
operator's start line show it, and ``hack/release_check.py`` checks that a release tag and the
chart's ``version``/``appVersion`` agree with it.
"""

__version__ = "0.1.0"
