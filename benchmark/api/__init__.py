"""The plugin API: everything a dataset, encoder, fusion, head or metric plugin may use from ``benchmark``.

A plugin imports from here (``benchmark.api``) and from ``registry`` (hooks, search-space parameter types),
nothing else of this project; built-in plugins are held to the same rule by a test, so what is listed in
``__all__`` is the stable surface that README's plugin guide documents. Internal modules may move; these
names stay.

Groups:
- contracts: the records components exchange (``Item``, ``Tracing``, ``Split``, ``DatasetIndex``,
  ``InputSpec``, ``LoadReport``, ``Predictive``), the component protocols with their required and optional
  members (``Dataset``, ``Encoder``, ``Fusion``, ``Head``, ``ServedHead``, ``Metric``) and the optional
  closed forms of a head (``CLOSED_FORMS``), and ``range_problems`` for a component's ``parameter_problems``;
- contract checks for a plugin's own tests (``check_head``, ``check_fusion``, ``check_encoder``,
  ``check_metric``, ``check_dataset``; a failure raises ``ContractViolation``), from ``checks.py``;
- errors: ``ConfigError`` (a setting is wrong, exit 2) and ``DataError`` (the data is wrong);
- dataset helpers: reading and checking label tables, tracings, folds and videos;
- encoder helpers: ``load_weights_file`` (reads a checkpoint and reports unmatched keys);
- head helpers: the MLP trunk shared by the baseline heads, ``mixture_predictive`` for heads whose
  predictive is a Gaussian mixture and ``empirical_predictive`` for one that is a set of values;
- metric helpers: ``add_metric`` and the per-item score columns metrics aggregate;
- observer helpers: ``csv_cell`` (a text cell a spreadsheet will not run as a formula);
- the synthetic stand-in's exact posterior (``synthetic_oracle``, ``ensure_generated``, ``ORACLE``) and the
  generator's rules on its parameters (``SyntheticParameters``).
"""
from __future__ import annotations

from typing import Any

from benchmark.api.checks import ContractViolation, check_dataset, check_encoder, check_fusion, check_head, check_metric
from benchmark.contracts import (
    CLOSED_FORMS,
    Dataset,
    DatasetIndex,
    Encoder,
    Exclusion,
    Fusion,
    Head,
    InputSpec,
    Item,
    LoadReport,
    Metric,
    Predictive,
    ServedHead,
    Split,
    Tracing,
    range_problems,
)
from benchmark.data.helpers import (
    MIN_OUTLINE_POINTS,
    N_FOLDS,
    IndexBuilder,
    TracingFile,
    age_bin,
    as_ef,
    check_unique,
    cross_validation,
    find_root,
    fold_split,
    listed_videos,
    normalise_sex,
    number_or_none,
    polygon_array,
    read_table,
    require_root,
    strip_avi,
    tracings_if_present,
    unknown_protocol,
    wrong_root,
)
from benchmark.data.video import VideoReadError, read_metaimage
from benchmark.encoding.weights import load_weights_file
from benchmark.errors import ConfigError, DataError
from benchmark.evaluation.scoring import (
    INTERVAL_LEVELS,
    THRESHOLDS,
    Items,
    add_metric,
    interval_columns,
    threshold_column,
    weighted_mean,
    weighted_moments,
)
from benchmark.predictive import empirical_predictive, mixture_predictive
from benchmark.store import csv_cell, inside
from benchmark.synth import oracle as synthetic_oracle
from benchmark.training.trunk import TRUNK_SEARCH_SPACE, MLPTrunk, PointHead, TrunkHead

# The simulator is only needed when a synthetic dataset is generated: imported on first use.
_LAZY = {"ensure_generated": ("benchmark.synth.generate", "ensure_generated"),
         "ORACLE": ("benchmark.synth.generate", "ORACLE"),
         "SyntheticParameters": ("benchmark.synth.generate", "Parameters")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'benchmark.api' has no attribute {name!r}")


__all__ = [
    # contracts
    "CLOSED_FORMS", "Dataset", "DatasetIndex", "Encoder", "Exclusion", "Fusion", "Head", "InputSpec", "Item",
    "LoadReport", "Metric", "Predictive", "ServedHead", "Split", "Tracing", "range_problems",
    # contract checks
    "ContractViolation", "check_dataset", "check_encoder", "check_fusion", "check_head", "check_metric",
    # errors
    "ConfigError", "DataError",
    # dataset helpers
    "IndexBuilder", "MIN_OUTLINE_POINTS", "N_FOLDS", "TracingFile", "age_bin", "as_ef", "check_unique",
    "cross_validation", "find_root", "fold_split", "listed_videos", "normalise_sex", "number_or_none",
    "polygon_array", "read_table", "require_root", "strip_avi",
    "tracings_if_present", "unknown_protocol", "wrong_root", "VideoReadError", "read_metaimage",
    # encoder helpers
    "load_weights_file",
    # head helpers
    "MLPTrunk", "PointHead", "TRUNK_SEARCH_SPACE", "TrunkHead", "empirical_predictive", "mixture_predictive",
    # metric helpers
    "INTERVAL_LEVELS", "THRESHOLDS", "Items", "add_metric", "interval_columns", "threshold_column",
    "weighted_mean", "weighted_moments",
    # observer helpers
    "csv_cell", "inside",
    # the synthetic stand-in
    "synthetic_oracle", "ensure_generated", "ORACLE", "SyntheticParameters",
]
