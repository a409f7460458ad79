"""``score``: add an external model's test predictions to a run's leaderboard.

The file needs ``FileName`` and ``EF_pred`` (the CardioBench contract); optional ``sample_0`` ...
``sample_{K-1}`` columns (K >= 2) make it probabilistic, otherwise it is scored as a point prediction (CRPS =
absolute error). Its ids must be exactly the run's test items, and every value a finite number a model could
output (float32's range); anything else is an error naming its row and column.

A name is refused (exit 2) when it equals, or becomes as a folder name, a model of the run or an external
entry already scored; ``--replace`` replaces that external entry (never a trained model's row).
"""
from __future__ import annotations

import re
from pathlib import Path

from benchmark.commands._plugins import add_plugin_arguments, registry_for

HELP = "score an external predictions.csv (FileName,EF_pred[,sample_*]) into a run's leaderboard"


def add_arguments(parser) -> None:
    parser.add_argument("run_dir", help="a finished run directory")
    parser.add_argument("predictions", help="CSV with FileName and EF_pred columns")
    parser.add_argument("--name", required=True, help="the row label on the leaderboard")
    add_plugin_arguments(parser)
    parser.add_argument("--replace", action="store_true", help="replace the external entry of that name")


def run(args) -> int:
    import numpy as np
    import pandas as pd

    from benchmark.contracts import Predictive
    from benchmark.errors import ConfigError, DataError
    from benchmark.evaluation.predictions_file import item_frame, subgroup_columns, write_predictions
    from benchmark.evaluation.report import load_results, write_report
    from benchmark.evaluation.run_records import read_manifest, test_data
    from benchmark.evaluation.scoring import item_scores
    from benchmark.identity import vouch_file
    from benchmark.store import RunDir, atomic_write_json, check_name, file_records, safe_name

    check_name(args.name, "--name")  # it names the model's folder under external/
    run = RunDir(args.run_dir)
    registry = registry_for(run, args)
    _check_name(run, args.name, args.replace)
    # The labels come from a job this machine made: a received predictions.csv could hold any.
    reference = next((r for r in load_results(run, own_only=True) if r.status == "ok" and r.items is not None), None)
    if reference is None:
        raise DataError(f"{run.root} has no finished job made on this machine to take the test items and labels "
                        "from; run the experiment into it first (a received run's jobs are computed again)")
    path = Path(args.predictions)
    try:  # every cell as its text, so that an error shows the cell as the file has it
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from None
    missing = [column for column in ("FileName", "EF_pred") if column not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(table.columns)}")
    if table["FileName"].duplicated().any():
        raise DataError(f"{path}: FileName {table['FileName'][table['FileName'].duplicated()].iloc[0]!r} is repeated")
    truth = reference.items.set_index("id")
    absent = sorted(set(truth.index) - set(table["FileName"]))
    extra = sorted(set(table["FileName"]) - set(truth.index))
    if absent or extra:
        raise DataError(f"{path}: its FileNames must be exactly the {len(truth)} test items of {run.root}: "
                        f"{len(absent)} missing (e.g. {absent[:3]}), {len(extra)} unknown (e.g. {extra[:3]})")
    rows = pd.Index(table["FileName"]).get_indexer(truth.index)  # the test items' order
    point = _numbers(table, "EF_pred", path)[rows]
    sample_columns = _sample_columns(table.columns, path)
    samples = (np.column_stack([_numbers(table, column, path) for column in sample_columns])[rows] if sample_columns
               else np.repeat(point[:, None], 2, axis=1))
    y = truth["EF"].to_numpy(float)
    scores = item_scores(y, Predictive(samples=samples, point=point))
    subgroups = {name: truth[name].tolist() for name in subgroup_columns(truth)}
    frame = item_frame(list(truth.index), truth["patient"].astype(str).tolist(), scores, subgroups)
    slug = safe_name(args.name)
    directory = run.path("external", slug)
    write_predictions(directory / "predictions.csv", frame)
    files = file_records(directory, ("predictions.csv",))
    manifest = read_manifest(run)
    result = atomic_write_json(directory / "result.json", {
        "job": slug, "external": True, "model": args.name, "head": args.name, "fusion": "external",
        "encoder": "external", "dataset": manifest["config"]["dataset"]["name"], "seed": 0, "split": "external",
        "status": "ok", "source": str(path.resolve()), "notes": scores.notes, "files": files,
        "test data": test_data(manifest)})  # the labels it was scored against: a change makes the row stale
    vouch_file(result)
    write_report(run, registry)
    return 0


def _numbers(table, column: str, path: Path):
    """``column`` as floats, each finite and within float32's range (what a model outputs; a larger value
    overflows the figures' arithmetic). Else a DataError naming the first other cell: a NaN sample, scored,
    would leave its item's CRPS undefined and its coverage false without a word."""
    import numpy as np
    import pandas as pd

    from benchmark.errors import DataError

    values = pd.to_numeric(table[column].str.strip(), errors="coerce").to_numpy(float)
    bad = ~(np.abs(values) <= np.finfo(np.float32).max)  # NaN too
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{path} row {row + 2} ({table['FileName'].iat[row]}): {column} {table[column].iat[row]!r} "
                        f"is not a finite number within ±{np.finfo(np.float32).max:.3g} (the header is row 1)")
    return values


def _sample_columns(columns, path: Path) -> list[str]:
    """The sample columns, which must be exactly ``sample_0`` ... ``sample_{K-1}`` with 2 <= K <= MAX_SAMPLES,
    or none: a gap, a second spelling of a number (``sample_01``) or a repeated name (pandas reads the second
    ``sample_0`` as ``sample_0.1``) is a file written wrongly, not samples to drop or add."""
    from benchmark.config import MAX_SAMPLES
    from benchmark.errors import DataError

    given = [column for column in columns if re.match(r"sample_\d", column)]
    expected = [f"sample_{k}" for k in range(len(given))]
    problems = [f"{column} is missing" for column in expected if column not in given]
    problems += [f"{column} is not one of them" for column in given if column not in expected]
    if len(given) == 1:
        problems.append("one sample column gives no spread (the fair CRPS needs two)")
    if len(given) > MAX_SAMPLES:
        problems.append(f"{len(given)} sample columns are more than {MAX_SAMPLES}")
    if problems:
        raise DataError(f"{path}: the sample columns must be sample_0 ... sample_{{K-1}} with K from 2 to "
                        f"{MAX_SAMPLES}, or none (EF_pred is then scored as a point prediction): {'; '.join(problems)}")
    return expected


def _check_name(run, name: str, replace: bool) -> None:
    """Refuse a name that would merge into, or overwrite, an existing row (exit 2, nothing written)."""
    from benchmark.config import ModelConfig
    from benchmark.errors import ConfigError
    from benchmark.evaluation.run_records import read_manifest, read_result
    from benchmark.store import safe_name

    if not run.manifest.is_file():
        raise ConfigError(f"{run.root} has no manifest.json: not a run directory (or the run never started)")
    config = read_manifest(run)["config"]
    trained = [ModelConfig(**model).key for model in config["models"]]
    external = [read_result(path)["model"] for path in run.external_results()]
    for existing in trained:
        if safe_name(existing) == safe_name(name):
            raise ConfigError(f"--name {name!r} is taken by the trained model {existing!r} of {run.root}; choose "
                              "another name (the external row must not be pooled into a trained one)")
    for existing in external:
        if safe_name(existing) == safe_name(name) and not replace:
            raise ConfigError(f"--name {name!r} is taken by the external model {existing!r} (external/"
                              f"{safe_name(existing)}); choose another name, or add --replace to replace it")
