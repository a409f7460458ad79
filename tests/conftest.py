import os

import pytest

# Tests must not depend on how many threads the machine offers; 2 cores in CI.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture
def write_plugin(tmp_path):
    """Write a plugin module file and return its path."""
    def write(name: str, source: str):
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        return path
    return write
