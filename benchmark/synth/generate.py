"""``generate``: draw every latent in the main process (deterministic for a seed), render and write the
media in a process pool, then write the tables, ``oracle.csv`` and the ``SYNTHETIC.md`` marker.

Generation goes to a temporary sibling folder that is moved into place at the end, marker last, so a killed
run never leaves a folder that looks complete; an earlier generation there is replaced file by file, deleting
only what it listed it wrote (``files``). ``ensure_generated`` reuses a complete generation whose marker records
the same parameters.
"""
from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmark.config import MAX_SEED, MAX_SYNTHETIC_N, MAX_THREADS
from benchmark.errors import ConfigError, DataError

from . import anatomy, files, oracle, patients, writers
from .render import Scene

FORMATS = ("echonet_dynamic", "echonet_pediatric", "camus")
VERSION = 3  # bump when the simulator changes what a seed produces (2: occlusion blanks the anatomy;
#              3: CAMUS posteriors per view)
MARKER, ORACLE = "SYNTHETIC.md", "oracle.csv"
QUALITY_PROBABILITY = {"Good": 0.45, "Medium": 0.4, "Poor": 0.15}
ECHONET_FPS = 50.0
DURATION_S = {"echonet_dynamic": (2.5, 4.0), "echonet_pediatric": (2.0, 3.0)}
CAMUS_FPS = (35.0, 80.0)
PEDIATRIC_MISSING_TRACING = 0.01
OCCLUSIONS = ("shadow", "dropout")


# Clips are cut at most 512 px (clips.size): a larger render adds only pixels the resize drops, and a frame costs
# size x size memory and time (CAMUS's 2-2.8x that on each side), so 100,000 px would ask gigabytes a frame.
MAX_SIZE = 1024


@dataclass(frozen=True)
class Parameters:
    format: str
    n: int
    seed: int
    size: int = 112
    ambiguous_fraction: float = 0.2
    label_noise: float = 3.0
    version: int = VERSION

    def problems(self) -> dict[str, str]:
        """What is wrong with each parameter, by name: `validate` asks before anything is generated."""
        rules = {
            "format": (self.format not in FORMATS, f"must be one of {', '.join(FORMATS)}, got {self.format!r}"),
            # [synthetic]'s own bounds, for the synthetic dataset named directly (its dataset.params) and `synth`:
            # a seed numpy refuses failed the run as a ValueError once it came to generate
            "n": (not 1 <= self.n <= MAX_SYNTHETIC_N,
                  f"must be at least 1 and at most {MAX_SYNTHETIC_N:,} videos (about 30 ms of CPU each), got {self.n}"),
            "seed": (not 0 <= self.seed <= MAX_SEED, f"must be between 0 and {MAX_SEED}, got {self.seed}"),
            "size": (not 32 <= self.size <= MAX_SIZE,
                     f"must be at least 32 and at most {MAX_SIZE} pixels (clips are at most 512), got {self.size}"),
            "ambiguous_fraction": (not 0.0 <= self.ambiguous_fraction <= 1.0,
                                   f"must be in [0, 1], got {self.ambiguous_fraction}"),
            "label_noise": (self.label_noise < 0, f"must be >= 0 EF points, got {self.label_noise}"),
        }
        return {name: problem for name, (failed, problem) in rules.items() if failed}

    def check(self) -> None:
        for name, problem in self.problems().items():
            raise ConfigError(f"synthetic data: {name} {problem}")

    @staticmethod
    def workers_problem(workers: int) -> str | None:
        """What is wrong with a count of rendering processes (not a parameter: the output does not depend on it),
        asked by `validate` and `synth --workers`; each is a process, all started at once."""
        if workers < 1:
            return f"must be at least 1 (1 = rendered in the calling process), got {workers}"
        if workers > MAX_THREADS:
            return f"must be at most {MAX_THREADS}: each is a process, all started at once; got {workers}"
        return None


def generate(format: str, n: int, out: str | Path, seed: int, size: int = 112, ambiguous_fraction: float = 0.2,
             label_noise: float = 3.0, workers: int = 2) -> Path:
    """Write a synthetic dataset into ``out`` (replacing an earlier synthetic generation there, and only that)."""
    params = Parameters(format, int(n), int(seed), int(size), float(ambiguous_fraction), float(label_noise))
    params.check()
    out = Path(out)
    if out.exists() and read_marker(out) is None and not files.is_generation(out) and any(out.iterdir()):
        raise DataError(f"{out} exists and holds no {MARKER}: it is not a synthetic generation, so it is left "
                        "alone. Choose an empty or new folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    _remove_stale(out)
    staging.mkdir()
    try:
        records = plan(params)
        _render_all(params.format, staging, records, workers)
        getattr(writers, params.format)(staging, records)
        oracle.write(staging / ORACLE, _oracle_rows(params, records))
        (staging / MARKER).write_text(_marker_text(params))
        files.write_list(staging)
        files.install(staging, out, MARKER)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def ensure_generated(out: str | Path, workers: int = 2, **params) -> bool:
    """Generate unless ``out`` already holds a complete generation with these parameters; True if generated."""
    wanted = Parameters(**params)
    wanted.check()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Several workers on one machine may ask for the same data at once: one generates, the others wait
    # on the lock and then find the complete generation.
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_marker(out) == asdict(wanted):
            return False
        generate(out=out, workers=workers, **{k: v for k, v in asdict(wanted).items() if k != "version"})
        return True


def read_marker(root: Path) -> dict | None:
    """The parameters recorded in ``root/SYNTHETIC.md``, or None when there is no complete generation."""
    path = Path(root) / MARKER
    if not path.is_file():
        return None
    text = path.read_text()
    start, end = text.find("```json\n"), text.rfind("```")
    try:
        return json.loads(text[start + len("```json\n"):end])
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ plan
def plan(params: Parameters) -> list[writers.Record]:
    rng = np.random.default_rng(params.seed)
    if params.format == "echonet_dynamic":
        records = []
        for i in range(params.n):
            patient = patients.draw_patient(f"P{i:06d}", True, rng)
            records.append(_echonet_record(params, _dynamic_name(rng), patient, _shape(params, patient, rng), rng))
        for record in records:
            record.split = str(rng.choice(["TRAIN", "VAL", "TEST"], p=[0.75, 0.125, 0.125]))
        return records
    if params.format == "echonet_pediatric":
        return _pediatric_records(params, rng)
    return _camus_records(params, rng)


def _dynamic_name(rng: np.random.Generator) -> str:
    return "0X" + "".join(rng.choice(list("0123456789ABCDEF"), 16))


def _pediatric_records(params: Parameters, rng: np.random.Generator) -> list[writers.Record]:
    records, patient_ids = [], []
    while len(records) < params.n:
        patient_id = f"CR{rng.integers(10, 100)}a{len(patient_ids):05d}"
        patient = patients.draw_patient(patient_id, False, rng)
        shape = _shape(params, patient, rng)  # one heart, filmed in each of the patient's videos
        patient_ids.append(patient_id)
        accessions = [f"CR{rng.integers(10, 100)}a{rng.integers(0, 10 ** 6):06d}" for _ in range(rng.integers(1, 3))]
        videos = min(params.n - len(records), 1 + int(rng.random() < 0.35) + int(rng.random() < 0.1))
        instances = np.sort(rng.choice(np.arange(1, 300), size=videos, replace=False))
        for instance in instances:
            stem = f"{patient_id}-{accessions[rng.integers(len(accessions))]}-{instance:06d}"
            record = _echonet_record(params, f"{stem}.avi", patient, shape, rng)
            record.missing_tracing = bool(rng.random() < PEDIATRIC_MISSING_TRACING)
            records.append(record)
    fold = {pid: k % 10 for k, pid in enumerate(rng.permutation(patient_ids))}
    for record in records:
        record.split = str(fold[record.patient.id])
    return records


def _echonet_record(params: Parameters, item_id: str, patient: patients.Patient, shape: anatomy.LVShape,
                    rng: np.random.Generator) -> writers.Record:
    low, high = DURATION_S[params.format]
    frames = int(round(rng.uniform(low, high) * ECHONET_FPS))
    c = _cycle(patient, ECHONET_FPS, rng.random(), frames)
    ambiguous = bool(rng.random() < params.ambiguous_fraction)
    ed, es = anatomy.traced_frames(c, ECHONET_FPS * 60.0 / patient.heart_rate)
    scene = _scene(params, patient, shape, c, "4CH", params.size, params.size, ambiguous, rng)
    record = _labelled(params, item_id, patient, {"A4C": scene}, shape, c, ed, es, ECHONET_FPS, ambiguous,
                       biplane=False, rng=rng)
    record.stem = item_id.removesuffix(".avi")
    return record


def _camus_records(params: Parameters, rng: np.random.Generator) -> list[writers.Record]:
    records = []
    for index in range(1, params.n + 1):
        patient = patients.draw_patient(f"patient{index:04d}", True, rng)
        fps = float(rng.uniform(*CAMUS_FPS))
        beat = fps * 60.0 / patient.heart_rate
        shape = _shape(params, patient, rng)
        phase0 = -rng.random() / beat  # the sequence starts within one frame before end-diastole
        c = _cycle(patient, fps, phase0, int(np.ceil(beat)) + 2)
        ambiguous = bool(rng.random() < params.ambiguous_fraction)
        ed, es = anatomy.traced_frames(c, beat)
        half = c[ed:es + 1]
        height = int(round(params.size * rng.uniform(2.0, 2.8)))
        width = int(round(height * rng.uniform(1.05, 1.25)))
        scenes = {view: _scene(params, patient, shape, half, view, height, width, ambiguous and view == "4CH", rng)
                  for view in ("2CH", "4CH")}
        records.append(_labelled(params, patient.id, patient, scenes, shape, c, ed, es, fps, ambiguous,
                                 biplane=True, rng=rng))
    order = rng.permutation(len(records))
    n_train, n_val = int(round(0.8 * len(records))), int(round(0.1 * len(records)))
    for rank, index in enumerate(order):
        records[index].split = "train" if rank < n_train else "val" if rank < n_train + n_val else "test"
    return records


def _shape(params: Parameters, patient: patients.Patient, rng: np.random.Generator) -> anatomy.LVShape:
    bsa = patients.lean_bsa(patient.age, patient.height, adult=params.format != "echonet_pediatric")
    return anatomy.design_shape(bsa, patients.visible_ef(patient.phenotype, rng), rng)


def _cycle(patient: patients.Patient, fps: float, phase0: float, frames: int) -> np.ndarray:
    """Quantised contraction per frame, starting at ``phase0`` of the beat."""
    phase = phase0 + np.arange(frames) * patient.heart_rate / 60.0 / fps
    return anatomy.quantise(anatomy.contraction(phase, anatomy.systolic_fraction(patient.heart_rate)))


def _scene(params, patient, shape, c, plane, height, width, occluded, rng) -> Scene:
    px_per_cm = rng.uniform(0.36, 0.44) * 0.97 * height / (2 * shape.b0)  # depth set to fit the heart
    return Scene(height=height, width=width, px_per_cm=float(px_per_cm),
                 apex_depth=float(rng.uniform(0.17, 0.22)), apex_offset=float(rng.uniform(-0.02, 0.04)),
                 tilt=float(np.radians(rng.uniform(4.0, 14.0))), shape=shape, contraction=c,
                 hidden_state=patient.hidden_state, plane=plane,
                 quality=str(rng.choice(list(QUALITY_PROBABILITY), p=list(QUALITY_PROBABILITY.values()))),
                 gain=float(rng.uniform(0.85, 1.2)), attenuation=float(rng.uniform(0.3, 1.0)),
                 occlusion=str(rng.choice(OCCLUSIONS)) if occluded else "",
                 noise_seed=int(rng.integers(2 ** 63)))


def _labelled(params, item_id, patient, scenes, shape, c, ed, es, fps, ambiguous, biplane, rng) -> writers.Record:
    by_state = anatomy.ef_by_state(shape, c[ed], c[es], biplane)
    edv = anatomy.volumes(shape, np.array([c[ed]]), patient.hidden_state, biplane)[0]
    label = by_state[patient.hidden_state] + params.label_noise * rng.standard_normal()
    return writers.Record(id=item_id, patient=patient, scenes=scenes, ed=ed, es=es, fps=fps, ef=float(label),
                          edv=float(edv), split="", ambiguous=ambiguous,
                          ef_by_state=(float(by_state[0]), float(by_state[1])))


# ------------------------------------------------------------------------------------ rendering
def _render_one(task: tuple[str, str, writers.Record]) -> None:
    fmt, root, record = task
    if fmt == "camus":
        writers.write_camus_views(Path(root), record)
    else:
        writers.write_echonet_video(Path(root), fmt, record)


def _single_thread() -> None:
    import cv2

    cv2.setNumThreads(1)  # the pool already uses every core


def _render_all(fmt: str, root: Path, records: list[writers.Record], workers: int) -> None:
    tasks = [(fmt, str(root), record) for record in records]
    if workers <= 1 or len(tasks) < 4:
        for task in tasks:
            _render_one(task)
        return
    # forkserver, not fork: the caller may already run threads (decord, torch, OpenCV) that a forked
    # worker would inherit in a locked state (a fork-based pool hung after video decoding in the parent).
    # As with any spawning pool, a script calling ``generate`` needs an ``if __name__ == "__main__"`` guard.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_single_thread) as pool:
        for _ in pool.map(_render_one, tasks, chunksize=max(1, min(16, len(tasks) // (4 * workers)))):
            pass


# --------------------------------------------------------------------------------- oracle, marker
def _oracle_rows(params: Parameters, records: list[writers.Record]) -> list[list]:
    knows_body_size = params.format == "echonet_pediatric"  # only Pediatric writes Weight and Height
    tabular = params.format != "echonet_dynamic"  # Dynamic's FileList has no demographics at all
    prior = patients.population_prior_hidden()
    rows = []
    for record in records:
        with_tabular = patients.tabular_prior_hidden(record.patient, knows_body_size) if tabular else prior
        for item_id, hidden in _oracle_items(params.format, record):
            rows += oracle.posterior_rows(item_id, record.ef_by_state, record.patient.hidden_state, hidden,
                                          prior, with_tabular, params.label_noise)
    return rows


def _oracle_items(fmt: str, record: writers.Record) -> list[tuple[str, bool]]:
    """The loader's item ids of a record, each with whether its video hides the lateral segment. CAMUS items
    are views: the segment lies in the 4-chamber plane only, so the 2-chamber view never shows it."""
    if fmt == "camus":
        return [(f"{record.id}_2CH", True), (f"{record.id}_4CH", record.ambiguous)]
    return [(record.id, record.ambiguous)]


def _marker_text(params: Parameters) -> str:
    return (
        "# Synthetic stand-in: NOT real patient data\n\n"
        f"Generated by `python -m benchmark synth` (benchmark.synth, simulator version {VERSION}) in the on-disk\n"
        f"layout of `{params.format}`. Videos, labels and demographics are simulated; `{ORACLE}` holds the exact\n"
        "posterior of EF per video for the information sets `vision` and `vision_tabular` (never a feature).\n"
        "Equations and defaults: docs/synthetic.md. Parameters:\n\n"
        f"```json\n{json.dumps(asdict(params), indent=2, sort_keys=True)}\n```\n"
    )


def _remove_stale(out: Path) -> None:
    """Staging folders of killed generations into ``out`` (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
