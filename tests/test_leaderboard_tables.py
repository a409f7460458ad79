"""Leaderboard, subgroup and paired-test tables and the files that carry them."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from benchmark.contracts import Predictive
from benchmark.evaluation.board_files import render_markdown, write_tables
from benchmark.evaluation.leaderboard import (
    JobResult,
    MetricSpec,
    build_leaderboard,
    build_subgroups,
    build_tables,
    metric_specs,
)
from benchmark.evaluation.predictions_file import item_frame, read_predictions, write_predictions
from benchmark.evaluation.scoring import SCORE_COLUMNS, item_scores
from benchmark.evaluation.stats import holm

N, K = 60, 20
PROTOCOL = {"split_hash": "3f2a9c", "clips": 1, "K": K, "seeds": [0, 1], "synthetic": True}


def job(model, seed, noise, spread, head=None, status="ok", error=""):
    if status != "ok":
        return JobResult("synthetic", "tiny3d", "concat", head or model, model, seed, status=status, error=error)
    rng = np.random.default_rng(100 + seed)
    y = rng.uniform(25, 75, N)
    center = y + np.random.default_rng(seed).normal(0, noise, N)
    samples = center[:, None] + spread * np.random.default_rng(seed + 7).standard_normal((N, K))
    scores = item_scores(y, Predictive(samples, samples.mean(axis=1)))
    subgroups = {"sex": np.where(np.arange(N) % 2, "F", "M"), "ambiguous": np.arange(N) < 15,
                 "view": ["A4C"] * N}
    items = item_frame([f"video{i:03d}" for i in range(N)], [f"patient{i // 2}" for i in range(N)], scores,
                       subgroups)
    return JobResult("synthetic", "tiny3d", "concat", head or model, model, seed, items=items, notes=scores.notes)


@pytest.fixture(scope="module")
def specs():
    return metric_specs()


@pytest.fixture(scope="module")
def results():
    return [job("mcsdr", seed, noise=3, spread=3) for seed in (0, 1)] + \
           [job("mse", seed, noise=5, spread=0) for seed in (0, 1)] + \
           [job("mdn", 0, 0, 0, status="failed", error="ValueError: NaN loss at epoch 3"),
            job("mdn", 1, 0, 0, status="failed", error="ValueError: NaN loss at epoch 2")] + \
           [job("gaussian", 0, noise=4, spread=4), job("gaussian", 1, 0, 0, status="failed", error="killed")]


def test_csv_and_json_start_with_the_contract_columns(tmp_path, results, specs):
    write_tables(tmp_path, results, PROTOCOL, baseline="mse", specs=specs, n_boot=50)
    csv = pd.read_csv(tmp_path / "leaderboard.csv")
    contract = ["dataset", "encoder", "fusion", "head", "n_seeds"] + \
               [column for spec in specs for column in (spec.name, f"{spec.name}_std")]
    assert list(csv.columns[:len(contract)]) == contract
    assert contract[5:9] == ["mae", "mae_std", "rmse", "rmse_std"]
    rows = json.loads((tmp_path / "leaderboard.json").read_text())
    assert list(rows[0])[:len(contract)] == contract
    assert list(csv["head"]) == ["mcsdr", "mse", "mdn", "gaussian"]


def test_values_are_means_and_stds_over_seeds_of_the_per_item_metric(results, specs):
    board = build_leaderboard(results, specs, n_boot=50).set_index("model")
    per_seed = [r.items["abs_error"].mean() for r in results if r.model == "mcsdr"]
    assert board.loc["mcsdr", "mae"] == pytest.approx(np.mean(per_seed))
    assert board.loc["mcsdr", "mae_std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert board.loc["mcsdr", "mae_ci_low"] < board.loc["mcsdr", "mae"] < board.loc["mcsdr", "mae_ci_high"]


def test_failed_jobs_are_listed_as_failed_never_as_numbers(tmp_path, results, specs):
    write_tables(tmp_path, results, PROTOCOL, specs=specs, n_boot=20)
    board = pd.read_csv(tmp_path / "leaderboard.csv").set_index("model")
    assert board.loc["mdn", "status"] == "failed" and board.loc["mdn", "n_seeds"] == 0
    assert board.loc["mdn", [spec.name for spec in specs]].isna().all()
    assert "NaN loss at epoch 3" in board.loc["mdn", "error"]
    assert board.loc["gaussian", "status"] == "partial" and board.loc["gaussian", "n_seeds"] == 1
    markdown = (tmp_path / "leaderboard.md").read_text()
    mdn_row = next(line for line in markdown.splitlines() if "| mdn " in line)
    assert mdn_row.count("failed") == len(specs) and not any(ch.isdigit() for ch in mdn_row.split("|", 7)[-1])
    assert "- mdn: seed 0: ValueError: NaN loss at epoch 3; seed 1" in markdown
    assert "- gaussian: seed 1: killed" in markdown


def test_markdown_bolds_the_best_value_by_direction_with_the_protocol_line(tmp_path, results, specs):
    write_tables(tmp_path, results, PROTOCOL, specs=specs, n_boot=20)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "split hash: 3f2a9c; clips: 1; K: 20; seeds: 0, 1; synthetic: yes" in markdown
    assert "Synthetic data" in markdown
    lines = markdown.splitlines()
    header = next(line for line in lines if line.startswith("| dataset"))
    labels = [cell.strip() for cell in header.strip("|").split("|")]
    cells = {line.split("|")[5].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in lines if line.startswith("| synthetic")}
    board = build_leaderboard(results, specs, n_boot=0).set_index("model")
    for spec in specs:
        column = labels.index(spec.label)
        bold = {model for model, row in cells.items() if row[column].startswith("**")}
        values = board.loc[["mcsdr", "mse", "gaussian"], spec.name]
        if not spec.ranked or values.isna().all():
            assert not bold, spec.name
            continue
        finite = values.dropna()
        key = {"min": finite, "max": -finite}.get(spec.direction, (finite - (spec.target or 0)).abs())
        assert bold == {key.idxmin()}, spec.name
    assert cells["mse"][labels.index("MAE")].count("**") == 0  # mse has the largest point error here


def test_best_respects_min_max_target_and_unranked():
    values = np.array([0.80, 0.97, np.nan, 0.88])
    assert list(MetricSpec("mae", "MAE", "min").best(values)) == [True, False, False, False]
    assert list(MetricSpec("r2", "R2", "max").best(values)) == [False, True, False, False]
    assert list(MetricSpec("picp90", "PICP90", "target", target=0.9).best(values)) == [False, False, False, True]
    assert not MetricSpec("width90", "Width90", "min", ranked=False).best(values).any()


def test_subgroup_rows_per_model_subgroup_and_group(tmp_path, results, specs):
    write_tables(tmp_path, results, PROTOCOL, specs=specs, n_boot=10)
    table = pd.read_csv(tmp_path / "subgroups.csv", dtype={"group": str})
    assert list(table.columns[:6]) == ["dataset", "encoder", "fusion", "head", "subgroup", "group"]
    assert list(table.columns[6:8]) == ["mae", "mae_std"]
    mcsdr = table[table["model"] == "mcsdr"]
    assert set(zip(mcsdr["subgroup"], mcsdr["group"])) == {("sex", "F"), ("sex", "M"), ("ambiguous", "True"),
                                                           ("ambiguous", "False"), ("view", "A4C")}
    assert "mdn" not in set(table["model"])
    ambiguous = mcsdr.set_index(["subgroup", "group"]).loc[("ambiguous", "True")]
    expected = [r.items["abs_error"][:15].mean() for r in results if r.model == "mcsdr"]
    assert ambiguous["mae"] == pytest.approx(np.mean(expected)) and ambiguous["n_items"] == 15


def test_small_subgroups_leave_r2_and_r_empty_and_nothing_is_infinite(tmp_path, specs):
    quality = np.array(["Good"] * (N - 6) + ["Medium"] * 3 + ["Poor"] * 2 + ["Unknown"])
    results = [job("mcsdr", seed, noise=3, spread=3) for seed in (0, 1)]
    for result in results:
        result.items["quality"] = quality
    write_tables(tmp_path, results, PROTOCOL, specs=specs, n_boot=10)
    table = pd.read_csv(tmp_path / "subgroups.csv").set_index(["subgroup", "group"])
    assert not np.isinf(table.select_dtypes("number").to_numpy()).any()
    for group, size in (("Poor", 2), ("Unknown", 1)):
        row = table.loc[("quality", group)]
        assert row["n_items"] == size
        assert np.isnan(row["r2"]) and np.isnan(row["pearson"]) and np.isfinite(row["mae"])
    assert table.loc[("quality", "Medium"), "n_items"] == 3 and np.isfinite(table.loc[("quality", "Medium"), "r2"])
    lines = (tmp_path / "subgroups.csv").read_text().splitlines()
    assert not any("inf" in line for line in lines)


def test_subgroups_follow_the_requested_columns(results, specs):
    table = build_subgroups(results, specs, subgroups=("sex", "quality"))
    assert set(table["subgroup"]) == {"sex"}


def test_a_plugin_datasets_own_subgroup_is_a_table_of_its_own_through_the_stored_file(tmp_path, specs):
    """Every subgroup column of the stored predictions.csv is reported, a plugin dataset's ("scanner") too, after
    the built-ins: adding a dataset is one file, with no list of subgroup names to edit elsewhere."""
    results = []
    for seed in (0, 1):
        result = job("mcsdr", seed, noise=3, spread=3)
        result.items["scanner"] = np.where(np.arange(N) < 20, "GE Vivid", "Philips")
        write_predictions(tmp_path / f"seed{seed}.csv", result.items)
        results.append(dataclasses.replace(result, items=read_predictions(tmp_path / f"seed{seed}.csv")))
    table = build_subgroups(results, specs)
    assert list(dict.fromkeys(table["subgroup"])) == ["sex", "view", "ambiguous", "scanner"]
    scanner = table[table["subgroup"] == "scanner"].set_index("group")
    assert scanner.loc["GE Vivid", "n_items"] == 20 and scanner.loc["Philips", "n_items"] == N - 20
    expected = [result.items["abs_error"][:20].mean() for result in results]
    assert scanner.loc["GE Vivid", "mae"] == pytest.approx(np.mean(expected))


def test_paired_tests_against_the_baseline(tmp_path, results, specs):
    write_tables(tmp_path, results, PROTOCOL, baseline="mse", specs=specs, n_boot=200)
    paired = pd.read_csv(tmp_path / "paired_tests.csv")
    assert set(zip(paired["model"], paired["loss"])) == {("mcsdr", "abs_error"), ("mcsdr", "crps"),
                                                         ("gaussian", "abs_error"), ("gaussian", "crps")}
    mcsdr_crps = paired[(paired["model"] == "mcsdr") & (paired["loss"] == "crps")].iloc[0]
    assert mcsdr_crps["mean_diff"] < 0 and mcsdr_crps["wilcoxon_p"] < 0.05 and mcsdr_crps["n_patients"] == 30
    assert "Paired tests against the baseline" in (tmp_path / "leaderboard.md").read_text()
    columns = list(paired.columns)
    assert columns[columns.index("wilcoxon_p") + 1] == "wilcoxon_p_holm"
    assert columns[columns.index("bootstrap_p") + 1] == "bootstrap_p_holm"
    for test in ("wilcoxon_p", "bootstrap_p"):  # one family per test: the four rows of the table
        np.testing.assert_allclose(paired[f"{test}_holm"], holm(paired[test]))


def test_markdown_marks_significance_only_after_the_holm_adjustment(specs):
    tables = build_tables([job("mse", 0, noise=5, spread=0)], specs, n_boot=10)
    paired = pd.DataFrame([
        {"model": "a", "baseline": "mse", "loss": "crps", "n_patients": 30, "mean_diff": -1.0, "ci_low": -2.0,
         "ci_high": -0.1, "wilcoxon_p": 0.02, "wilcoxon_p_holm": 0.08, "bootstrap_p": 0.03, "bootstrap_p_holm": 0.09},
        {"model": "b", "baseline": "mse", "loss": "crps", "n_patients": 30, "mean_diff": -3.0, "ci_low": -4.0,
         "ci_high": -2.0, "wilcoxon_p": 0.001, "wilcoxon_p_holm": 0.004, "bootstrap_p": 0.002,
         "bootstrap_p_holm": 0.008}])
    text = render_markdown(dataclasses.replace(tables, paired=paired), specs, PROTOCOL)
    row_a, row_b = (line for line in text.splitlines() if line.startswith(("| a ", "| b ")))
    assert "*" not in row_a and "0.08 " in row_a
    assert "0.004*" in row_b and "0.008*" in row_b and "0.001*" not in row_b


def test_tables_are_identical_for_identical_results(tmp_path, results, specs):
    for name in ("a", "b"):
        write_tables(tmp_path / name, results, PROTOCOL, baseline="mse", specs=specs, n_boot=50)
    for file in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.tex", "subgroups.csv",
                 "paired_tests.csv"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file


def test_latex_table_bolds_with_textbf(tmp_path, results, specs):
    write_tables(tmp_path, results, PROTOCOL, specs=specs, n_boot=10)
    tex = (tmp_path / "leaderboard.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\textbf{" in tex and r"$\pm$" in tex and "split hash" in tex


HOSTILE = 'x^^5cinput^^7b/etc/passwd^^7d ~ \\ | <img src="http://elsewhere/p.png">\n| forged | row |'


def test_a_received_model_name_stays_text_in_the_tex_and_markdown_tables(tmp_path, results, specs):
    """A label from a received result.json: TeX reads ``^^5c`` as a backslash (``\\input{/etc/passwd}`` in a
    paper), a ``|`` or line break moves markdown columns, and markdown viewers render HTML."""
    hostile = [dataclasses.replace(result, model=HOSTILE) for result in results if result.model == "mse"]
    write_tables(tmp_path, results + hostile, PROTOCOL, specs=specs, n_boot=10)
    tex = (tmp_path / "leaderboard.tex").read_text()
    row = next(line for line in tex.splitlines() if "passwd" in line).removesuffix("\\\\")  # the row's end
    assert "^" not in row and "~" not in row and "\\\\" not in row
    assert r"x\textasciicircum{}\textasciicircum{}5cinput" in row and r"\textasciitilde{} \textbackslash{}" in row
    markdown = (tmp_path / "leaderboard.md").read_text()
    row = next(line for line in markdown.splitlines() if "passwd" in line)
    columns = next(line for line in markdown.splitlines() if "| mse " in line).count(" | ")  # same table
    assert row.count(" | ") == columns  # the name is one cell
    assert "<img" not in markdown and "&lt;img src=" in row and "\\| forged \\| row \\|" in row


def test_a_received_model_name_makes_no_markdown_image_or_link(tmp_path, results, specs):
    """``![x](url)`` is an image as much as ``<img>``: a viewer fetches it from elsewhere. A backslash before ``]``
    must stay text as well, or it would escape the escape."""
    name = "![pixel](http://elsewhere/p.png) [a\\](http://elsewhere/x)"
    hostile = [dataclasses.replace(result, model=name) for result in results if result.model == "mse"]
    write_tables(tmp_path, results + hostile, PROTOCOL, specs=specs, n_boot=10)
    row = next(line for line in (tmp_path / "leaderboard.md").read_text().splitlines() if "elsewhere" in line)
    assert "![pixel\\](http://elsewhere/p.png) [a\\\\\\](http://elsewhere/x)" in row


def test_received_score_notes_and_protocol_stay_text_in_the_markdown(tmp_path, results, specs):
    """A result.json's ``notes`` and a manifest's ``protocol`` come from the sender as well: an image in them was
    fetched from elsewhere by a markdown viewer, and a line break began a heading or a table of the sender's."""
    noted = [dataclasses.replace(result, notes={"crps": HOSTILE}) if result.model == "mse" else result
             for result in results]
    write_tables(tmp_path, noted, {**PROTOCOL, "dataset": HOSTILE}, specs=specs, n_boot=10)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "<img" not in markdown and "\n| forged" not in markdown
    protocol, note = (next(line for line in markdown.splitlines() if line.startswith(start))
                      for start in ("**Protocol**", "- mse:"))
    assert "&lt;img src=" in protocol and "\\| forged \\| row \\|" in protocol
    assert "&lt;img src=" in note and "\\| forged \\| row \\|" in note


def test_predictions_csv_leads_with_the_cardiobench_columns(tmp_path, results):
    path = write_predictions(tmp_path / "predictions.csv", results[0].items)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["FileName", "EF_pred", "view"] and "crps" in header and "lo95" in header
    back = read_predictions(path)
    pd.testing.assert_frame_equal(back[results[0].items.columns], results[0].items, check_dtype=False,
                                  check_exact=True)  # report must rebuild identical numbers


def test_score_columns_are_the_columns_item_scores_gives():
    """What report checks every received predictions.csv for (``run_records.read_job_predictions``)."""
    y = np.array([40.0, 60.0])
    assert tuple(item_scores(y, Predictive(np.stack([y, y + 1], axis=1), y)).columns) == SCORE_COLUMNS


def test_a_job_stores_every_subgroup_its_test_items_have_and_refuses_a_name_of_the_files_own_columns():
    """A job's predictions.csv gets each subgroup of its items, built-ins first (in their order), then a plugin
    dataset's in order of appearance; an item missing one is "unknown" there. A subgroup named as a column the file
    already has (EF) would overwrite it: refused before any work, naming the item."""
    from pathlib import Path

    from benchmark.contracts import Item
    from benchmark.errors import DataError
    from benchmark.evaluation.predictions_file import check_subgroup_names
    from benchmark.orchestration.jobs import _subgroups

    def item(name, **subgroups):
        return Item(id=name, patient=name, ef=55.0, video=Path(f"{name}.avi"), fold="TEST", subgroups=subgroups)

    items = {"a": item("a", scanner="GE", sex="F"), "b": item("b", sex="M", probe="S5-1")}
    assert _subgroups(["a", "b"], items) == {"sex": ["F", "M"], "scanner": ["GE", "unknown"],
                                             "probe": ["unknown", "S5-1"]}
    check_subgroup_names(list(items.values()), "clinic")
    with pytest.raises(DataError, match=r"clinic: item 'c': subgroup 'EF' is not a name a subgroup may take"):
        check_subgroup_names([item("c", EF="high")], "clinic")
