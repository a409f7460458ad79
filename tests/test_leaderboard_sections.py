"""leaderboard.md below the main table: CIs, per-seed values, subgroups with their sizes, samples outside
[0, 100] EF; and leaderboard.json rows that carry the same."""
import json

import numpy as np
import pytest

from benchmark.contracts import Predictive
from benchmark.evaluation.board_files import write_tables
from benchmark.evaluation.leaderboard import JobResult, SampleRange, build_tables, metric_specs
from benchmark.evaluation.predictions_file import item_frame
from benchmark.evaluation.scoring import item_scores

N, K = 50, 10
PROTOCOL = {"K": K, "seeds": [0, 1], "synthetic": True}


def job(model, seed, spread, outliers=0):
    rng = np.random.default_rng(seed)
    y = np.random.default_rng(5).uniform(25, 75, N)
    samples = y[:, None] + rng.normal(0, 3, N)[:, None] + spread * rng.standard_normal((N, K))
    samples[:outliers, 0] = 500.0  # impossible EF values
    items = item_frame([f"v{i}" for i in range(N)], [f"p{i // 2}" for i in range(N)],
                       item_scores(y, Predictive(samples, samples.mean(axis=1))),
                       {"ambiguous": np.where(np.arange(N) < 12, "yes", "no")})
    return JobResult("synthetic", "tiny3d", "concat", model, model, seed, items=items, samples=SampleRange.of(samples))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sections")
    results = [job("mcsdr", 0, 4, outliers=5), job("mcsdr", 1, 4, outliers=0), job("mse", 0, 0), job("mse", 1, 0),
               JobResult("synthetic", "tiny3d", "concat", "mdn", "mdn", 0, status="failed", error="NaN loss")]
    write_tables(folder, results, PROTOCOL, baseline="mse", specs=metric_specs(), n_boot=50)
    return folder, results


def section(markdown: str, title: str) -> list[str]:
    """The table rows of the section headed ``title`` (up to the next heading)."""
    lines = markdown.splitlines()
    start = lines.index(title)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines))
    return [line for line in lines[start:end] if line.startswith("| ") and not line.startswith("|--")]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_ci_table_shows_mean_and_interval(written):
    folder, _ = written
    board = json.loads((folder / "leaderboard.json").read_text())
    mcsdr = next(row for row in board if row["model"] == "mcsdr")
    header, *rows = section((folder / "leaderboard.md").read_text(), "## 95% confidence intervals")
    row = next(cells(line) for line in rows if line.startswith("| mcsdr "))
    mae = row[cells(header).index("MAE")]
    assert mae == f"{mcsdr['mae']:.2f} [{mcsdr['mae_ci_low']:.2f}, {mcsdr['mae_ci_high']:.2f}]"
    assert mcsdr["mae_ci_low"] < mcsdr["mae"] < mcsdr["mae_ci_high"]
    assert not any(line.startswith("| mdn ") for line in rows)  # a failed model has no interval


def test_per_seed_rows_are_each_seeds_own_values(written):
    folder, results = written
    header, *rows = section((folder / "leaderboard.md").read_text(), "## Per seed")
    column = cells(header).index("MAE")
    seen = {(cells(line)[0], cells(line)[1]): cells(line)[column] for line in rows}
    for result in results:
        expected = "failed" if result.status != "ok" else f"{result.items['abs_error'].mean():.2f}"
        assert seen[(result.model, str(result.seed))] == expected
    per_seed = {(row["model"], row["seed"]): row for model in json.loads((folder / "leaderboard.json").read_text())
                for row in model["per_seed"]}
    assert per_seed[("mcsdr", 1)]["mae"] == pytest.approx(results[1].items["abs_error"].mean())


def test_subgroup_table_gives_each_groups_size_and_values(written):
    folder, results = written
    header, *rows = section((folder / "leaderboard.md").read_text(), "### Subgroup: ambiguous")
    assert cells(header)[:3] == ["model", "MAE: no (n=38)", "MAE: yes (n=12)"]
    mcsdr = next(cells(line) for line in rows if line.startswith("| mcsdr "))
    expected = np.mean([r.items["abs_error"][:12].mean() for r in results if r.model == "mcsdr"])
    assert mcsdr[2] == f"{expected:.2f}"
    groups = next(row for row in json.loads((folder / "leaderboard.json").read_text()) if row["model"] == "mcsdr")
    assert {(row["subgroup"], row["group"], row["n_items"]) for row in groups["subgroups"]} == \
           {("ambiguous", "no", 38), ("ambiguous", "yes", 12)}


def test_share_of_samples_outside_0_100(written):
    folder, _ = written
    rows = section((folder / "leaderboard.md").read_text(), "## Samples outside [0, 100] EF")[1:]
    shares = {cells(line)[0]: cells(line)[1] for line in rows}
    assert shares["mcsdr"] == f"{100 * 5 / (2 * N * K):.1f}%" and shares["mse"] == "0.0%"
    assert next(cells(line)[2] for line in rows if line.startswith("| mcsdr ")).endswith("to 500.00")
    board = {row["model"]: row for row in json.loads((folder / "leaderboard.json").read_text())}
    assert board["mcsdr"]["samples_outside"] == pytest.approx(5 / (2 * N * K))
    assert board["mcsdr"]["samples_max"] == 500.0


def test_paired_tests_are_in_the_json_rows_with_adjusted_p_values(written):
    folder, _ = written
    board = {row["model"]: row for row in json.loads((folder / "leaderboard.json").read_text())}
    assert {row["loss"] for row in board["mcsdr"]["paired_tests"]} == {"abs_error", "crps"}
    assert all("wilcoxon_p_holm" in row for row in board["mcsdr"]["paired_tests"])
    assert board["mse"]["paired_tests"] == [] and board["mdn"]["per_seed"][0]["status"] == "failed"


def test_sample_ranges_pool_over_splits():
    pooled = SampleRange.pooled([SampleRange.of(np.array([[-5.0, 50.0]])), SampleRange.of(np.array([[101.0, 2.0]]))])
    assert (pooled.count, pooled.outside, pooled.low, pooled.high) == (4, 2, -5.0, 101.0) and pooled.share == 0.5
    assert SampleRange.pooled([]) is None


def test_tables_build_without_a_baseline():
    tables = build_tables([job("a", 0, 2)], metric_specs(), n_boot=5)
    assert tables.paired is None and list(tables.per_seed["model"]) == ["a"]
