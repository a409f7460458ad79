"""Checkpoint reading shared by every encoder: unwrapping, prefixes, heads, and the report."""
import pytest
import torch
from torch import nn

from benchmark.encoding.weights import extract_state_dict, load_state, load_weights_file
from benchmark.errors import BenchmarkError


def small_model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


@pytest.mark.parametrize("wrap", [
    lambda s: s,
    lambda s: {"model": s},
    lambda s: {"state_dict": {f"module.{k}": v for k, v in s.items()}, "epoch": 1},
    lambda s: {"model_state_dict": s, "regressor_state_dict": {}, "epoch": 1},
    lambda s: {"checkpoint": 1, "model": {"state_dict": s}},
], ids=["bare", "model", "state_dict+module", "model_state_dict", "nested"])
def test_every_wrapper_unwraps_to_the_same_state(wrap):
    state = small_model().state_dict()
    extracted = extract_state_dict(wrap(state))
    assert extracted.keys() == state.keys()
    assert all(torch.equal(extracted[k], state[k]) for k in state)


def test_non_state_dict_content_is_an_error():
    with pytest.raises(BenchmarkError, match="not tensors"):
        extract_state_dict({"epoch": 3, "weights": [1, 2]}, source="odd.pth")


def test_non_strict_loads_what_matches_and_reports_the_rest():
    source, target = small_model(), small_model()
    state = {k: v for k, v in source.state_dict().items() if k != "1.running_mean"}
    state["extra.weight"] = torch.zeros(1)
    with pytest.warns(UserWarning, match="missing"):
        report = load_state(target, state, "partial.pth", strict=False)
    assert report.missing == ("1.running_mean",) and report.unexpected == ("extra.weight",)
    assert not report.ok and report.loaded == len(state) - 1
    assert torch.equal(target[0].weight, source[0].weight)


def test_strict_refuses_and_names_keys_without_loading():
    target = small_model()
    before = target[0].weight.clone()
    state = {k: torch.ones_like(v) for k, v in target.state_dict().items() if k != "0.bias"}
    with pytest.raises(BenchmarkError, match=r"missing \(1\): 0.bias"):
        load_state(target, state, "partial.pth")
    assert torch.equal(target[0].weight, before)


def test_head_keys_are_dropped_only_when_the_model_lacks_them():
    model = nn.Module()
    model.fc = nn.Linear(2, 2)
    state = {"fc.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}
    assert load_state(model, state, "x").dropped == ()


def test_missing_and_truncated_files_are_clear_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="does not exist"):
        load_weights_file(small_model(), tmp_path / "absent.pth")
    torch.save(small_model().state_dict(), tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchmarkError, match="cut.pth"):
        load_weights_file(small_model(), tmp_path / "cut.pth")
