"""Synthetic echo in a real dataset's on-disk format, generated on first use, with exact EF posteriors."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import registry
from benchmark.api import ConfigError, DataError, DatasetIndex, Split
from registry import hookimpl

NAME = "synthetic"
FORMATS = ("echonet_dynamic", "echonet_pediatric", "camus")
VIDEO_CHECKS = ".video_checks.json"
# The loader settings a generation can be read with, per format: the generator writes CAMUS in the 2023 layout
# only, and Pediatric's A4C folder only (no PSAX), and a loader told to read the 2019 layout or the PSAX view found
# none of it, and only after generating it. Compared ignoring case, as the loaders read them.
READABLE_AS = {"camus": {"release": ("auto", "2023")}, "echonet_pediatric": {"view": ("A4C",)}}
# It traces two frames of each video (ED and ES, writers.py): a loader keeping only videos with more excluded every
# one, and only after generating them.
TRACED_FRAMES = 2


class SyntheticDataset:
    """Labelled synthetic stand-in (Dynamic, Pediatric or CAMUS layout) whose Bayes-optimal posterior is known.

    The data are generated into ``root`` unless a complete generation with the same parameters is
    there already (``SYNTHETIC.md`` records them); loading and splits are the real loader's, so the
    synthetic data exercise exactly the code the real data go through. Items get the subgroup
    ``ambiguous`` ("yes" when a shadow or dropout hides the lateral wall, and for every CAMUS 2-chamber
    view, whose plane does not contain it).
    """

    def __init__(self, root, format: str = "echonet_pediatric", n: int = 400, seed: int = 0,
                 ambiguous_fraction: float = 0.2, label_noise: float = 3.0, size: int = 112, workers: int = 2,
                 **loader_params):
        if format not in FORMATS:
            raise ConfigError(f"{NAME}: format must be one of {', '.join(FORMATS)}, got {format!r}")
        for key, problem in self.parameter_problems({"format": format, "workers": workers, **loader_params}).items():
            raise ConfigError(f"{NAME}: {key}: {problem}")
        self.root = Path(root)
        self.generation = dict(format=format, n=int(n), seed=int(seed), size=int(size),
                               ambiguous_fraction=float(ambiguous_fraction), label_noise=float(label_noise))
        self.workers = int(workers)
        # The video checks of a generation this tool wrote are kept beside it, so that a rerun does not
        # decode two frames of every video again (about 1 ms each: most of a rerun's data loading).
        loader_params.setdefault("video_cache", self.root / VIDEO_CHECKS)
        self.loader = registry.build("dataset", format, root=self.root, **loader_params)

    @staticmethod
    def parameter_problems(params: dict) -> dict[str, str]:
        """The generator's rules on the generation parameters given (``synthetic.params`` sets ``size`` and
        ``workers``; ``dataset.params`` of the synthetic dataset named directly sets any, ``format``, ``n`` and
        ``seed`` too, which the stand-in takes from [dataset] and [synthetic], checked there), and, given the
        ``format``, on the loader settings it hands on (``READABLE_AS``), asked by `validate` before anything is
        generated: unasked, a bad one stopped the run only once it came to generate."""
        from benchmark.api import SyntheticParameters

        fields = ("format", "n", "seed", "size", "ambiguous_fraction", "label_noise")
        given = {key: params[key] for key in fields if key in params}
        problems = SyntheticParameters(**{"format": FORMATS[0], "n": 1, "seed": 0, **given}).problems()
        workers = SyntheticParameters.workers_problem(params.get("workers", 1))
        if workers:
            problems["workers"] = workers
        return {**problems, **_unreadable(params)}

    @classmethod
    def example_params(cls, directory: Path) -> dict:
        """Parameters of a tiny generation in ``directory`` (about a second), for contract checks."""
        return {"root": Path(directory) / "synthetic", "n": 30, "size": 32, "workers": 1}

    @property
    def protocols(self):
        return self.loader.protocols

    def load(self) -> DatasetIndex:
        from benchmark.api import ORACLE, ensure_generated
        from benchmark.api import synthetic_oracle as oracle

        ensure_generated(self.root, workers=self.workers, **self.generation)
        index = self.loader.load()
        oracle_path = self.root / ORACLE
        _, ambiguous = oracle.read(oracle_path, "vision")
        items = []
        for item in index.items:
            flag = ambiguous.get(item.id)
            if flag is None:
                raise DataError(f"{oracle_path}: no posterior for item {item.id!r}; the generation in {self.root} "
                                "is inconsistent: delete the folder to regenerate it")
            items.append(dataclasses.replace(item, subgroups={**item.subgroups, "ambiguous": flag}))
        return dataclasses.replace(index, items=tuple(items), synthetic=True, oracle_path=oracle_path)

    def splits(self, index: DatasetIndex, protocol: str, **options) -> list[Split]:
        return self.loader.splits(index, protocol, **options)


def _unreadable(params: dict) -> dict[str, str]:
    """The loader settings in ``params`` that a generation of ``params["format"]`` cannot be read with."""
    form = params.get("format")
    problems = {key: f"the synthetic stand-in writes {form} as {key} {allowed[-1]!r} only, so {params[key]!r} would "
                     f"find none of its files; use {' or '.join(map(repr, allowed))}, or point dataset.root at real "
                     f"{form} data"
                for key, allowed in READABLE_AS.get(form, {}).items()
                if key in params and str(params[key]).casefold() not in {value.casefold() for value in allowed}}
    traced = params.get("min_traced_frames")
    if form is not None and isinstance(traced, int) and traced > TRACED_FRAMES:
        problems["min_traced_frames"] = (f"the synthetic stand-in traces {TRACED_FRAMES} frames of each video (ED and "
                                         f"ES), so {traced} would exclude every one; use at most {TRACED_FRAMES}, or "
                                         f"point dataset.root at real {form} data")
    return problems


@hookimpl
def register_datasets(registry):
    registry.add(NAME, SyntheticDataset, metadata={"formats": list(FORMATS), "synthetic": True})
