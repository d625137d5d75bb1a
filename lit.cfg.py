"""lit configuration: the IR tests under test/ (run ``lit test/``)."""

import os

import lit.formats

config.name = "rdu"  # noqa: F821
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir"]  # noqa: F821
config.test_source_root = os.path.dirname(__file__)  # noqa: F821
config.test_exec_root = os.path.join(os.path.dirname(__file__), "build", "lit")  # noqa: F821
config.excludes = [".venv", "out", "build", "examples", "docs"]  # noqa: F821
config.environment["PATH"] = os.environ["PATH"]  # noqa: F821
# The checkout's own code, whichever checkout the venv was installed from (git worktrees).
config.environment["PYTHONPATH"] = os.path.dirname(os.path.abspath(__file__))  # noqa: F821
