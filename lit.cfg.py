"""lit configuration: the IR tests under test/ (``lit test/``)."""

import os

import lit.formats

config.name = "rdu"  # noqa: F821
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir"]  # noqa: F821
config.test_source_root = os.path.join(os.path.dirname(__file__), "test")  # noqa: F821
config.environment["PATH"] = os.environ["PATH"]  # noqa: F821
