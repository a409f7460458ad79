"""Every registered fusion: output widths with and without tabular data, and the MCSDR key layout."""
import pytest
import torch

import registry

FEATURE_DIM, TABULAR_DIM, BATCH = 32, 4, 5
FUSIONS = ["none", "concat", "film", "cross_attention"]


def test_the_four_fusions_are_registered_with_their_tabular_needs():
    assert set(FUSIONS) <= set(registry.names("fusion"))
    needs = {name: registry.describe("fusion", name).metadata["needs_tabular"] for name in FUSIONS}
    assert needs == {"none": False, "concat": True, "film": True, "cross_attention": True}


@pytest.mark.parametrize("name", FUSIONS)
@pytest.mark.parametrize("tabular_dim", [0, TABULAR_DIM])
def test_output_has_the_declared_width(name, tabular_dim):
    fusion = registry.build("fusion", name, feature_dim=FEATURE_DIM, tabular_dim=tabular_dim)
    tabular = torch.randn(BATCH, tabular_dim) if tabular_dim else None
    out = fusion(torch.randn(BATCH, FEATURE_DIM), tabular)
    assert out.shape == (BATCH, fusion.out_dim)
    uses_tabular = tabular_dim and name != "none"
    assert fusion.out_dim == (FEATURE_DIM if name in ("none", "film") or not uses_tabular else FEATURE_DIM + 64)


@pytest.mark.parametrize("name", ["concat", "film", "cross_attention"])
def test_tabular_attributes_change_the_condition(name):
    torch.manual_seed(0)
    fusion = registry.build("fusion", name, feature_dim=FEATURE_DIM, tabular_dim=TABULAR_DIM)
    feature, tabular = torch.randn(BATCH, FEATURE_DIM), torch.randn(BATCH, TABULAR_DIM)
    out = fusion(feature, tabular)
    out.pow(2).sum().backward()
    grads = [p.grad for n, p in fusion.named_parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    if name == "film":  # starts as the identity, so training begins from vision only
        assert torch.allclose(out, feature)
    else:
        assert not torch.allclose(fusion(feature, tabular), fusion(feature, tabular + 1))


@pytest.mark.parametrize("name", ["concat", "film", "cross_attention"])
def test_missing_or_wrong_tabular_is_an_error(name):
    fusion = registry.build("fusion", name, feature_dim=FEATURE_DIM, tabular_dim=TABULAR_DIM)
    with pytest.raises(ValueError, match="4 tabular attributes"):
        fusion(torch.randn(BATCH, FEATURE_DIM), None)
    with pytest.raises(ValueError, match="4 tabular attributes"):
        fusion(torch.randn(BATCH, FEATURE_DIM), torch.randn(BATCH, 3))


def test_concat_matches_mcsdr_checkpoint_keys_and_output():
    fusion = registry.build("fusion", "concat", feature_dim=512, tabular_dim=4)
    shapes = {key: tuple(value.shape) for key, value in fusion.state_dict().items()}
    assert shapes == {"tabular_encoder.0.weight": (64, 4), "tabular_encoder.0.bias": (64,),
                      "tabular_encoder.2.weight": (64, 64), "tabular_encoder.2.bias": (64,)}
    feature, tabular = torch.randn(2, 512), torch.randn(2, 4)
    w = fusion.state_dict()  # the reference's tabular_encoder: Linear, ReLU, Linear; condition = [feature, embedding]
    embedding = torch.relu(tabular @ w["tabular_encoder.0.weight"].T + w["tabular_encoder.0.bias"])
    embedding = embedding @ w["tabular_encoder.2.weight"].T + w["tabular_encoder.2.bias"]
    torch.testing.assert_close(fusion(feature, tabular), torch.cat([feature, embedding], 1))
    assert fusion.out_dim == 576  # MCSDR's map_cond input width
