"""report.html: one self-contained page, rebuilt by ``report``, where no text from a run directory becomes markup."""
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.cli import main
from benchmark.contracts import Predictive
from benchmark.evaluation.html import render_html
from benchmark.evaluation.leaderboard import JobResult, build_tables, metric_specs
from benchmark.evaluation.predictions_file import item_frame
from benchmark.evaluation.scoring import item_scores

HOSTILE = '<script>alert("label")</script>'
HOSTILE_REASON = '<img src=x onerror=alert("reason")>'


class Links(HTMLParser):
    """Every src and href of a page, and its script elements."""

    def __init__(self):
        super().__init__()
        self.links, self.scripts = [], 0

    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.links += [value for name, value in attrs if name in ("src", "href")]


def parse(text: str) -> Links:
    links = Links()
    links.feed(text)
    return links


def test_a_run_writes_a_self_contained_report_with_every_table_and_figure(reference_run, tmp_path):
    run = shutil.copytree(reference_run, tmp_path / "run")
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0  # `report RUN_DIR` rebuilds it
    text = (run / "report.html").read_text()
    links = parse(text)
    assert links.links and all(link.startswith(("data:image/png;base64,", "#")) for link in links.links), \
        [link[:40] for link in links.links if not link.startswith(("data:", "#"))]
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", text)
    assert links.scripts == 1  # the table sorter, inline
    board = pd.read_csv(run / "leaderboard.csv")
    for model in board["model"]:
        assert f"<td data-sort=\"{model}\">{model}</td>" in text
    for key in ("leaderboard", "confidence", "per_seed", "subgroup_ambiguous", "outside", "excluded", "identities"):
        assert f'id="{key}"' in text or f'id="table-{key}"' in text, key
    figures = sorted(path.name for path in (run / "plots").glob("*.png"))
    assert {"posterior.png", "pred_vs_true.png", "bland_altman.png", "pit.png", "reliability.png",
            "forest.png"} <= set(figures)
    assert text.count("<img ") == len(figures)
    assert "split_hash" in text and "config_hash" in text  # the manifest's identities


def _result(model: str) -> JobResult:
    rng = np.random.default_rng(0)
    y = rng.uniform(30, 70, 12)
    samples = y[:, None] + rng.normal(0, 3, (12, 8))
    items = item_frame([f"v{i}" for i in range(12)], [f"p{i}" for i in range(12)],
                       item_scores(y, Predictive(samples, samples.mean(axis=1))),
                       {"ambiguous": np.where(np.arange(12) < 4, "yes", "no")})
    return JobResult("synthetic", "tiny3d", "concat", "mse", model, 0, items=items)


def test_text_from_a_run_directory_never_becomes_markup():
    specs = metric_specs()
    tables = build_tables([_result(HOSTILE), _result("mse")], specs, baseline="mse", n_boot=10)
    excluded = pd.DataFrame({"id": ["v99"], "file": ["x.avi"], "dropped": ["item"], "frame": [""],
                             "reason": [HOSTILE_REASON]})
    manifest = {"experiment": f"run{HOSTILE}", "protocol": {"dataset": HOSTILE}, "synthetic": True,
                "git": {"commit": HOSTILE_REASON}}
    text = render_html(tables, specs, manifest, [], excluded, received=[f"external/{HOSTILE}/result.json"])
    assert HOSTILE not in text and HOSTILE_REASON not in text
    assert "Results not made here.</strong> 1 of the results" in text
    assert "&lt;script&gt;alert(&#34;label&#34;)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(&#34;reason&#34;)&gt;" in text
    assert parse(text).scripts == 1


def test_the_template_ships_with_the_package():
    from importlib.resources import files

    assert files("benchmark.evaluation").joinpath("templates", "report.html.j2").is_file()
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"benchmark.evaluation" = ["templates/*.j2"]' in text
