import os
from pathlib import Path

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


# A copy of ../shared/reference/uniformer_s_state_dict.txt: every key and shape of the UniFormer-S
# checkpoints in the wild (head removed).
UNIFORMER_REFERENCE = Path(__file__).resolve().parent / "data" / "uniformer_s_state_dict.txt"


@pytest.fixture(scope="session")
def uniformer_reference_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in UNIFORMER_REFERENCE.read_text().splitlines():
        if line.strip():
            key, shape = line.split(" ", 1)
            shapes[key] = tuple(int(size) for size in shape.strip("[] ").split(",") if size.strip())
    return shapes
