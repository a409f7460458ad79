"""Contract checks for plugin authors: ``check_head(MyHead)`` in your own tests, and the project's
``tests/test_contracts.py`` over every registered component.

Each check builds the component with tiny sizes and tests what the engine relies on: the required
members, output shapes (with batch, sample count and widths all different, so a transposed result
fails), finite values, a scalar loss whose backward pass reaches the parameters, closed forms that
agree with many samples, and a state_dict round trip that reproduces the outputs exactly. A failed
check raises ``ContractViolation`` (an ``AssertionError``, so pytest reports it as a failed test)
naming the component and what is wrong.

Each takes a class or factory, or a ``registry`` record (then its metadata, e.g. ``needs_tabular``
or ``trajectories``, is used too), and the parameters to build it with.
"""
from __future__ import annotations

import functools
import io
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from benchmark.contracts import (
    CLOSED_FORMS,
    ROLES,
    DatasetIndex,
    InputSpec,
    LoadReport,
    Predictive,
    ServedHead,
    Split,
    contract_of,
    missing_from_instance,
    missing_members,
)
from benchmark.data.helpers import index_problems
from benchmark.predictive import mixture_predictive
from registry import ComponentRecord

# Distinct sizes: a (n, B) sample or a (D, B) feature cannot pass for (B, n) or (B, D).
BATCH, SAMPLES, CONDITION_DIM, FEATURE_DIM, TABULAR_DIM = 3, 7, 5, 6, 4
FRAMES = 2  # clip length for encoders that take any: the fewest that video encoders' strides accept
DRAWS = 4000  # samples per item when closed forms are compared with the sample distribution
# Closed forms vs DRAWS samples: the mean within 5 standard errors, the std within 10%, and the CDF
# within 0.05 of the empirical one (the DKW bound for 4000 draws at 1 - 1e-4 is 0.035).
MEAN_ERRORS, STD_TOLERANCE, CDF_TOLERANCE = 5.0, 0.1, 0.05


class ContractViolation(AssertionError):
    """A component does not do what its contract says."""


Component = ComponentRecord | Callable[..., Any]


def check_head(head: Component, *, metadata: Mapping[str, Any] | None = None,
               ids: Sequence[str] | None = None, **params: Any) -> None:
    """Check a head class/factory (or record) built as ``factory(condition_dim=5, **params)``.

    A head that needs no training (``needs_training = False``) serves known items: pass ``ids`` it knows.
    """
    factory, metadata, who = _unpack(head, "head", metadata)
    if contract_of("head", metadata).protocol is ServedHead:
        return _check_served_head(factory, who, metadata, ids, params)
    torch.manual_seed(0)
    build = functools.partial(factory, condition_dim=CONDITION_DIM, **params)
    module = build()
    _members(module, "head", metadata, who)
    condition = torch.randn(BATCH, CONDITION_DIM)
    # A head trained on EF in percent gets targets on that scale.
    target = 30 + 40 * torch.rand(BATCH) if getattr(module, "target_scale", "") == "raw" else torch.randn(BATCH)
    module.train()
    loss = module.loss(condition, target)
    _expect(torch.is_tensor(loss) and loss.ndim == 0,
            f"{who}: loss(condition {BATCH}x{CONDITION_DIM}, target ({BATCH},)) must be a scalar tensor, "
            f"got {_shape(loss)}")
    _expect(bool(torch.isfinite(loss)), f"{who}: loss is {loss.item()}")
    _backward(module, loss, who)
    module.eval()
    with torch.no_grad():
        samples = module.sample(condition, SAMPLES)
        _array(samples, (BATCH, SAMPLES), f"{who}: sample(condition {BATCH}x{CONDITION_DIM}, n={SAMPLES})")
        _check_closed_forms(module, condition, who)
        if metadata.get("trajectories"):
            _check_trajectories(module, condition, who)
    _round_trip(module, build, who, lambda m: [_seeded(m.loss, condition, target),
                                               _seeded(m.sample, condition, SAMPLES)]
                + [getattr(m, name)(condition) for name in ("mean", "std") if hasattr(m, name)])


def check_fusion(fusion: Component, *, metadata: Mapping[str, Any] | None = None, **params: Any) -> None:
    """Check a fusion built as ``factory(feature_dim=6, tabular_dim=4 or 0, **params)``: with tabular
    attributes, and without (a dataset may have none) unless it declares ``needs_tabular``."""
    factory, metadata, who = _unpack(fusion, "fusion", metadata)
    for tabular_dim in (TABULAR_DIM,) if metadata.get("needs_tabular") is True else (TABULAR_DIM, 0):
        _check_fusion_built(functools.partial(factory, feature_dim=FEATURE_DIM, tabular_dim=tabular_dim, **params),
                            metadata, f"{who} with tabular_dim={tabular_dim}", tabular_dim)


def check_encoder(encoder: Component, *, metadata: Mapping[str, Any] | None = None, **params: Any) -> None:
    """Check an encoder built as ``factory(**params)`` on a clip of 2 x C x T x size x size, T its declared
    frames (or 2). A large encoder can be checked at a small ``size`` where it takes one."""
    factory, metadata, who = _unpack(encoder, "encoder", metadata)
    torch.manual_seed(0)
    build = functools.partial(factory, **params)
    module = build()
    _members(module, "encoder", metadata, who)
    _expect(isinstance(module.feature_dim, int) and module.feature_dim > 0,
            f"{who}: feature_dim must be a positive int, got {module.feature_dim!r}")
    spec = module.input_spec
    _expect(isinstance(spec, InputSpec), f"{who}: input_spec must be an InputSpec, got {spec!r}")
    clip = torch.randn(2, spec.channels, spec.frames or FRAMES, spec.size, spec.size)
    module.eval()  # one forward pass serves the shape, the backward pass and the round trip
    feature = module(clip)
    _array(feature, (2, module.feature_dim), f"{who}: forward(clip {tuple(clip.shape)})")
    _backward(module, feature.square().mean(), who)
    _round_trip(module, build, who, lambda m: [feature.detach() if m is module else m(clip)])
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "foreign.pt"
        torch.save({"not_a_weight_of_this_encoder": torch.zeros(1)}, path)
        with warnings.catch_warnings():  # the partial load it reports is the point here
            warnings.simplefilter("ignore")
            report = module.load_weights(path, strict=False)
    _expect(isinstance(report, LoadReport) and not report.ok and report.unexpected,
            f"{who}: load_weights(path, strict=False) must return a LoadReport that lists the file's unmatched "
            f"keys, got {report!r}")


def check_metric(metric: Component, *, metadata: Mapping[str, Any] | None = None) -> None:
    """Check a metric function ``(y, Predictive) -> float`` and its record metadata (``label``,
    ``direction``): a float for a predictive with every closed form, and no error for samples alone."""
    function, metadata, who = _unpack(metric, "metric", metadata)
    missing = missing_members("metric", function, metadata) + missing_from_instance("metric", function, metadata)
    _expect(not missing, f"{who} lacks {', '.join(missing)}")
    # Targets drawn from their predictives, spread over the EF range so every threshold has both classes.
    rng = np.random.default_rng(0)
    n, k = 9, 40
    means, stds = np.linspace(20, 75, n), rng.uniform(2, 8, n)
    samples = means[:, None] + stds[:, None] * rng.standard_normal((n, k))
    y = means + stds * rng.standard_normal(n)
    full = mixture_predictive(np.ones((n, 1)), means[:, None], stds[:, None], samples)
    value = function(y, full)
    _expect(isinstance(value, (float, np.floating)) and math.isfinite(value),
            f"{who}: metric(y ({n},), predictive with closed forms) must be a finite float, got {value!r}")
    value = function(y, Predictive(samples=samples, point=samples.mean(axis=1)))
    _expect(isinstance(value, (float, np.floating)),
            f"{who}: metric(y, predictive of samples only) must be a float (NaN where undefined), got {value!r}")


def check_dataset(dataset: Component, *, metadata: Mapping[str, Any] | None = None,
                  directory: str | Path | None = None, **params: Any) -> None:
    """Check a dataset class: its members, and, where the class declares ``example_params(directory)``
    and a ``directory`` is given, that a tiny instance loads valid items and splits every protocol."""
    factory, metadata, who = _unpack(dataset, "dataset", metadata)
    missing = missing_members("dataset", factory, metadata)
    _expect(not missing, f"{who} lacks {', '.join(missing)}")
    example = getattr(factory, "example_params", None)
    if example is None or directory is None:
        return
    instance = factory(**{**example(Path(directory)), **params})
    _members(instance, "dataset", metadata, who)
    protocols = list(instance.protocols)
    _expect(protocols and all(isinstance(p, str) for p in protocols), f"{who}: protocols must name protocols")
    index = instance.load()
    _expect(isinstance(index, DatasetIndex) and index.items, f"{who}: load() must return a DatasetIndex with items")
    problems = index_problems(index)
    _expect(not problems, f"{who}: load() broke the dataset contract: {'; '.join(problems[:5])}")
    ids = [item.id for item in index.items]
    for protocol in protocols:
        splits = instance.splits(index, protocol)
        _expect(splits and all(isinstance(split, Split) for split in splits),
                f"{who}: splits(index, {protocol!r}) must return a list of Split")
        for split in splits:
            _expect(set(split.roles) <= set(ids) and set(split.roles.values()) <= set(ROLES),
                    f"{who}: split {split.name!r} of {protocol!r} must map loaded ids to {ROLES}")
            _expect(split.ids("train") and split.ids("test"), f"{who}: split {split.name!r} has an empty role")


# --------------------------------------------------------------------------- pieces
def _unpack(component: Component, kind: str, metadata: Mapping[str, Any] | None):
    if isinstance(component, ComponentRecord):
        if component.kind != kind:
            raise ValueError(f"check_{kind} got the {component.kind} {component.name!r}")
        return (component.factory, {**component.metadata, **(metadata or {})},
                f"{kind} {component.name!r} ({component.origin})")
    return component, dict(metadata or {}), f"{kind} {getattr(component, '__qualname__', component)!r}"


def _expect(condition: Any, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def _members(component: Any, kind: str, metadata: Mapping[str, Any], who: str) -> None:
    missing = missing_from_instance(kind, component, metadata)
    _expect(not missing, f"{who} lacks the required {', '.join(missing)}")


def _shape(value: Any) -> str:
    return f"shape {tuple(value.shape)}" if hasattr(value, "shape") else type(value).__name__


def _array(value: Any, shape: tuple[int, ...], call: str) -> None:
    _expect(torch.is_tensor(value) and tuple(value.shape) == shape,
            f"{call} must return shape {shape}, got {_shape(value)}")
    _expect(bool(torch.isfinite(value).all()), f"{call} returned non-finite values")


def _backward(module: torch.nn.Module, loss: torch.Tensor, who: str) -> None:
    _expect(loss.requires_grad, f"{who}: the loss does not depend on anything trainable (no backward pass)")
    loss.backward()
    trainable = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad for p in trainable if p.grad is not None]
    _expect(not trainable or grads, f"{who}: the backward pass reaches none of its parameters")
    _expect(all(bool(torch.isfinite(g).all()) for g in grads), f"{who}: the backward pass gives non-finite gradients")


def _seeded(function: Callable[..., Any], *args: Any) -> Any:
    torch.manual_seed(1)
    return function(*args)


def _round_trip(module: torch.nn.Module, build: Callable[[], torch.nn.Module], who: str,
                outputs: Callable[[torch.nn.Module], list[torch.Tensor]]) -> None:
    """Save the state_dict, load it into a fresh, differently seeded build: the outputs are the same.

    A fresh build, as the engine does when it reloads a model, so state kept outside the state_dict shows.
    """
    module.eval()
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(12345)
    restored = build()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.eval()
    with torch.no_grad():
        for before, after in zip(outputs(module), outputs(restored)):
            _expect(torch.equal(before, after), f"{who}: outputs differ after a state_dict save/load round trip")


def _check_closed_forms(head: torch.nn.Module, condition: torch.Tensor, who: str) -> None:
    present = [name for name in CLOSED_FORMS if hasattr(head, name)]
    if not present:
        return
    draws = head.sample(condition, DRAWS).double().numpy()
    forms: dict[str, Any] = {}
    for name in ("mean", "std"):
        if name in present:
            value = getattr(head, name)(condition)
            _array(value, (BATCH,), f"{who}: {name}(condition)")
            forms[name] = value.double().numpy()
    if "mixture" in present:
        log_weights, means, stds = head.mixture(condition)
        for part, value in (("log_weights", log_weights), ("means", means), ("stds", stds)):
            _array(value, (BATCH, log_weights.shape[1]), f"{who}: mixture(condition) {part}")
        _expect(torch.allclose(log_weights.logsumexp(-1), torch.zeros(BATCH), atol=1e-5) and bool((stds > 0).all()),
                f"{who}: mixture weights must sum to 1 and stds be positive")
        mixture_mean = (log_weights.exp() * means).sum(-1).double().numpy()
        if "mean" in forms:
            _expect(np.allclose(mixture_mean, forms["mean"], rtol=1e-4, atol=1e-5),
                    f"{who}: mean() {forms['mean']} differs from the mixture's mean {mixture_mean}")
        forms.setdefault("mean", mixture_mean)
    cdf = (lambda y: head.cdf(condition, torch.as_tensor(y, dtype=condition.dtype)).double().numpy()) \
        if "cdf" in present else None
    _against_samples(who, draws, forms.get("mean"), forms.get("std"), cdf)
    if "log_prob" in present:
        y = torch.as_tensor(np.median(draws, axis=1), dtype=condition.dtype)
        _array(head.log_prob(condition, y), (BATCH,), f"{who}: log_prob(condition, y)")


def _against_samples(who: str, draws: np.ndarray, mean: np.ndarray | None, std: np.ndarray | None,
                     cdf: Callable[[np.ndarray], np.ndarray] | None) -> None:
    """Closed forms agree with the distribution of ``draws`` (B, DRAWS)."""
    spread = draws.std(axis=1)
    if mean is not None:
        bound = MEAN_ERRORS * spread / math.sqrt(draws.shape[1]) + 1e-5 * (1 + np.abs(mean))
        _expect(np.all(np.abs(mean - draws.mean(axis=1)) <= bound),
                f"{who}: the closed-form mean {mean} disagrees with the mean of {draws.shape[1]} samples "
                f"{draws.mean(axis=1)}")
    if std is not None:
        _expect(np.all(np.abs(std - spread) <= STD_TOLERANCE * std + 1e-5),
                f"{who}: the closed-form std {std} disagrees with the std of {draws.shape[1]} samples {spread}")
    if cdf is not None:
        levels = np.quantile(draws, np.linspace(0.05, 0.95, 9), axis=1).T  # (B, 9)
        values = np.stack([cdf(levels[:, j]) for j in range(levels.shape[1])], axis=1)
        empirical = (draws[:, None, :] <= levels[:, :, None]).mean(axis=2)
        _expect(np.all((values >= 0) & (values <= 1)) and np.all(np.diff(values, axis=1) >= -1e-6),
                f"{who}: cdf must be non-decreasing in y and within [0, 1], got {values}")
        _expect(np.all(np.abs(values - empirical) <= CDF_TOLERANCE),
                f"{who}: cdf disagrees with the empirical CDF of {draws.shape[1]} samples by "
                f"{np.abs(values - empirical).max():.3f}")


def _check_trajectories(head: torch.nn.Module, condition: torch.Tensor, who: str) -> None:
    """A head declaring ``trajectories``: ``sample(..., record=True)`` is the path whose last step is the sample."""
    samples = _seeded(head.sample, condition, SAMPLES)
    torch.manual_seed(1)
    paths = head.sample(condition, SAMPLES, record=True)
    _expect(torch.is_tensor(paths) and paths.ndim == 3 and paths.shape[0] >= 2
            and tuple(paths.shape[1:]) == (BATCH, SAMPLES),
            f"{who} declares trajectories: sample(condition, {SAMPLES}, record=True) must return shape "
            f"(steps + 1, {BATCH}, {SAMPLES}), got {_shape(paths)}")
    _expect(torch.allclose(paths[-1], samples), f"{who}: the recorded path must end at the samples")


def _check_fusion_built(build: Callable[[], torch.nn.Module], metadata: Mapping[str, Any], who: str,
                        tabular_dim: int) -> None:
    torch.manual_seed(0)
    module = build()
    _members(module, "fusion", metadata, who)
    _expect(isinstance(module.out_dim, int) and module.out_dim > 0,
            f"{who}: out_dim must be a positive int, got {module.out_dim!r}")
    feature = torch.randn(BATCH, FEATURE_DIM, requires_grad=True)
    tabular = torch.randn(BATCH, TABULAR_DIM) if tabular_dim else None
    module.train()
    condition = module(feature, tabular)
    _array(condition, (BATCH, module.out_dim), f"{who}: forward(feature {BATCH}x{FEATURE_DIM}, tabular)")
    _backward(module, condition.square().mean(), who)
    _expect(feature.grad is not None and bool(torch.isfinite(feature.grad).all()),
            f"{who}: the condition must depend (differentiably) on the video feature")
    _round_trip(module, build, who, lambda m: [m(feature.detach(), tabular)])


def _check_served_head(factory: Callable[..., Any], who: str, metadata: Mapping[str, Any],
                       ids: Sequence[str] | None, params: Mapping[str, Any]) -> None:
    if not ids:
        raise ValueError(f"check_head: {who} serves known items (needs_training = False): pass ids=[...] it knows")
    module = factory(condition_dim=0, **params)
    _members(module, "head", metadata, who)
    predictive = module.predict_ids(list(ids), SAMPLES, seed=0)
    call = f"{who}: predict_ids({len(ids)} ids, n={SAMPLES}, seed=0)"
    _expect(isinstance(predictive, Predictive), f"{call} must return a Predictive, got {type(predictive).__name__}")
    for name, shape in (("samples", (len(ids), SAMPLES)), ("point", (len(ids),))):
        value = np.asarray(getattr(predictive, name))
        _expect(value.shape == shape and np.isfinite(value).all(), f"{call}: {name} must be finite of shape {shape}")
    again = module.predict_ids(list(ids), SAMPLES, seed=0)
    _expect(np.array_equal(predictive.samples, again.samples), f"{call}: the same seed must give the same samples")
    many = module.predict_ids(list(ids), DRAWS, seed=1)
    _against_samples(who, many.samples, many.mean, many.std, many.cdf)


__all__ = ["ContractViolation", "check_dataset", "check_encoder", "check_fusion", "check_head", "check_metric"]
