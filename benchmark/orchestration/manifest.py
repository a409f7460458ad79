"""What a run records about itself: resolved config, hashes, package versions, code revision, machine, and
(from the runner) the identities its results are named by: data content, component sources, weight files."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmark.config import Experiment
from benchmark.orchestration.storage import safe_url

PACKAGES = ("lvefbench", "torch", "torchvision", "timm", "pluggy", "optuna", "pandas", "numpy", "scipy",
            "decord", "properscoring", "tabulate", "opencv-python-headless", "matplotlib", "nibabel",
            "SimpleITK")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(directory: Path) -> dict[str, Any] | None:
    """The commit and whether the tree had local changes, or None outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    summary = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if "torch" in sys.modules:  # only describe accelerators when torch is already loaded
        torch = sys.modules["torch"]
        summary["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return summary


def recorded_config(experiment: Experiment, storage: str = "") -> dict[str, Any]:
    """The resolved config as run directories and storages record it: the storage URL without its password.
    ``storage`` (``--storage``) stands for ``tune.storage`` as it does in the run: ``status RUN_DIR`` reads the
    storage a run's workers share from here, and a worker given one on the command line was shown as a run alone."""
    config = experiment.to_dict()
    config["tune"]["storage"] = safe_url(storage or config["tune"]["storage"])
    return config


def build_manifest(experiment: Experiment, storage: str = "", **sections: Any) -> dict[str, Any]:
    return {
        "experiment": experiment.name,
        # Absolute, so that ``report`` finds the experiment's plugin files from any working directory.
        "source": str(Path(experiment.source).resolve()) if Path(experiment.source).is_file() else experiment.source,
        "config": recorded_config(experiment, storage),
        "config_hash": experiment.hash(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
        "git": git_revision(Path(__file__).resolve().parent),
        "machine": machine(),
        **sections,
    }
