"""Tabular preprocessing: fitted on training items only, fixed Sex encoding, missing indicators."""
from pathlib import Path

import numpy as np
import pytest

from benchmark.contracts import Item
from benchmark.data.tabular import fit_tabular
from benchmark.errors import ConfigError

KINDS = {"Sex": "categorical", "Age": "numeric", "Weight": "numeric", "Site": "categorical"}


def item(sex, age, weight, site="a") -> Item:
    return Item(id=f"{sex}{age}{weight}", patient="p", ef=50.0, video=Path("v.avi"), fold="0",
                tabular={"Sex": sex, "Age": age, "Weight": weight, "Site": site})


TRAIN = [item("F", 2.0, 10.0), item("M", 4.0, None), item("M", 6.0, 30.0)]
TEST = [item("unknown", None, 1000.0, site="never seen"), item("F", 100.0, 20.0)]


def test_statistics_come_from_training_items_only():
    transform = fit_tabular(["Age", "Weight"], KINDS, TRAIN)
    assert transform.means == {"Age": 4.0, "Weight": 20.0}
    assert transform.stds["Age"] == pytest.approx(np.std([2.0, 4.0, 6.0]))
    train = transform.transform(TRAIN)
    assert train[:, 0].mean() == pytest.approx(0.0) and train[:, 0].std() == pytest.approx(1.0)
    # Extreme test values change nothing about the fit, and are scaled with the training statistics.
    test = transform.transform(TEST)
    assert test[1, 0] == pytest.approx((100.0 - 4.0) / transform.stds["Age"])
    refit = fit_tabular(["Age", "Weight"], KINDS, TRAIN)
    np.testing.assert_array_equal(refit.transform(TEST), test)


def test_missing_values_get_the_training_mean_and_an_indicator():
    transform = fit_tabular(["Age", "Weight"], KINDS, TRAIN)
    assert transform.feature_names == ["Age", "Age_missing", "Weight", "Weight_missing"]
    row = transform.transform(TEST)[0]
    assert row[0] == pytest.approx(0.0) and row[1] == 1.0  # imputed with the training mean
    assert transform.transform(TRAIN)[1, 2:].tolist() == [0.0, 1.0]


def test_sex_encoding_is_fixed_with_an_explicit_unknown():
    only_women = fit_tabular(["Sex"], KINDS, [TRAIN[0]])
    assert only_women.feature_names == ["Sex=F", "Sex=M", "Sex=unknown"]
    np.testing.assert_array_equal(only_women.transform(TEST), [[0, 0, 1], [1, 0, 0]])


def test_other_categories_come_from_training_with_unknown_for_new_values():
    transform = fit_tabular(["Site"], KINDS, TRAIN)
    assert transform.feature_names == ["Site=a", "Site=unknown"]
    assert transform.transform(TEST)[0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("column", ["ESV", "EDV", "LVef", "lvesv", "EF"])
def test_label_derived_columns_are_refused(column):
    with pytest.raises(ConfigError, match=f"'{column}' is derived from the EF label"):
        fit_tabular(["Age", column], {**KINDS, column: "numeric"}, TRAIN)


def test_unknown_column_suggests_the_nearest():
    with pytest.raises(ConfigError, match="no tabular column 'age'.*Age"):
        fit_tabular(["age"], KINDS, TRAIN)


BODY = {"Weight": "numeric", "Height": "numeric"}


def body(weight, height) -> Item:
    return Item(id=f"{weight}-{height}", patient="p", ef=50.0, video=Path("v.avi"), fold="0",
                tabular={"Weight": weight, "Height": height})


def test_bmi_and_bsa_are_derived_from_weight_and_height():
    people = [body(20.0, 100.0), body(70.0, 175.0), body(4.0, 50.0)]
    transform = fit_tabular(["BMI", "BSA"], BODY, people)
    bmi = np.array([20.0, 70.0 / 1.75**2, 16.0])
    bsa = np.sqrt(np.array([20.0 * 100.0, 70.0 * 175.0, 4.0 * 50.0]) / 3600)  # Mosteller
    assert transform.means["BMI"] == pytest.approx(bmi.mean()) and transform.stds["BSA"] == pytest.approx(bsa.std())
    out = transform.transform(people)
    np.testing.assert_allclose(out[:, 0], (bmi - bmi.mean()) / bmi.std(), rtol=1e-5)
    np.testing.assert_allclose(out[:, 2], (bsa - bsa.mean()) / bsa.std(), rtol=1e-5)


@pytest.mark.parametrize("weight, height", [(None, 100.0), (20.0, None), (0.0, 100.0), (20.0, -1.0),
                                            (float("nan"), 100.0)])
def test_a_derived_attribute_is_missing_when_an_input_is_missing_or_not_positive(weight, height):
    transform = fit_tabular(["BMI"], BODY, [body(20.0, 100.0), body(30.0, 120.0)])
    row = transform.transform([body(weight, height)])[0]
    assert row.tolist() == [0.0, 1.0]  # the training mean, flagged missing


def test_derived_attributes_need_their_inputs():
    with pytest.raises(ConfigError, match="no tabular column 'BMI'"):
        fit_tabular(["BMI"], {"Age": "numeric"}, [item("F", 2.0, 10.0)])


LEAKY_DATASET = '''
from registry import hookimpl


class Leaky:  # offers its EDV column as an attribute: the EF label's own ingredient
    protocols = ("official",)
    tabular_columns = {"Age": "numeric", "EDV": "numeric"}

    def __init__(self, root):
        self.root = root

    def load(self):
        raise AssertionError("the check needs no data")

    def splits(self, index, protocol):
        raise AssertionError("the check needs no data")


@hookimpl
def register_datasets(registry):
    registry.add("leaky", Leaky)
'''


def test_a_label_derived_column_of_a_dataset_is_refused_before_any_work_when_dataset_tabular_is_unset(write_plugin):
    """With `dataset.tabular` unset (all of the dataset's columns), such a column passed validate and stopped the run
    only when the tabular transform was fitted, after stage 1."""
    from benchmark.config import from_dict
    from benchmark.data.prepare import check_tabular
    from registry import load_registry

    registry = load_registry([str(write_plugin("leaky_dataset", LEAKY_DATASET))])
    experiment = from_dict({"name": "x", "dataset": {"name": "leaky"}, "models": [{"head": "mse"}]}, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: `dataset.tabular` is unset, so all of leaky's columns \(Age, EDV\) "
                                          r"would be used; list the others there instead: 'EDV' is derived from the EF"):
        check_tabular(experiment, registry)
    check_tabular(from_dict({"name": "x", "dataset": {"name": "leaky", "tabular": ["Age"]}, "models": [{"head": "mse"}]},
                            "x.toml"), registry)


def test_a_column_the_dataset_declares_label_derived_is_refused_whatever_its_name(write_plugin):
    """A dataset's metadata ``label_derived`` names its own label-derived columns (``LVEDV_ml`` is no name the
    generic list knows): refused in `dataset.tabular` and among all columns, before any data are read."""
    from benchmark.config import from_dict
    from benchmark.data.prepare import check_tabular
    from registry import load_registry

    source = (LEAKY_DATASET.replace('"EDV": "numeric"', '"LVEDV_ml": "numeric"')
              .replace('registry.add("leaky", Leaky)',
                       'registry.add("leaky", Leaky, metadata={"label_derived": ["LVEDV_ml"]})'))
    registry = load_registry([str(write_plugin("leaky_dataset", source))])

    def experiment(tabular):
        return from_dict({"name": "x", "dataset": {"name": "leaky", "tabular": tabular}, "models": [{"head": "mse"}]},
                         "x.toml")

    for tabular in (["Age", "LVEDV_ml"], None):
        with pytest.raises(ConfigError, match="'LVEDV_ml' is derived from the EF label"):
            check_tabular(experiment(tabular), registry)
    check_tabular(experiment(["Age"]), registry)
