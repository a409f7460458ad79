"""Run independent pieces of a run (encoder stages, tuning studies, jobs) side by side in forked processes.

Stage 1, feature extraction and the heads' training run small convolutions and matrix products, which
torch's threads barely speed up on a few cores; separate processes with one thread each do scale. Every
piece stores its outputs atomically under the run directory, where the run's own process finds and
reloads them, and answers with a small picklable value (its seconds, a tuning winner, a job record).
With one torch thread per process the stored files are bit for bit those of a run in one process with
``train.threads = 1`` (``tests/test_processes.py``); a run with more
threads sums in another order and may differ in the last bits, as ``train.threads`` already says.

A piece may wait for others (``after``): a job for its encoder stage and its model's tuning. The parent
hands each answer to ``on_done`` before it starts anything that waits for it, so a process forked later
sees what that answer added to the run's state (a tuning winner, a reloaded stage). A piece that fails,
and every piece that waits for it, is left out of the answers: the run does it in its own process
afterwards and reports an error the usual way. Nothing a failed process wrote is trusted, because every
write is atomic and checked when read.
"""
from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import wait
from typing import Any

import torch


def run_in_processes(pieces: Mapping[str, Callable[[], Any]], workers: int, say: Callable[[str], None], *,
                     after: Mapping[str, tuple[str, ...]] | None = None,
                     on_done: Callable[[str, Any], None] = lambda name, answer: None) -> dict[str, Any]:
    """Run each piece in its own forked process, at most ``workers`` at a time, each only once the pieces
    it comes ``after`` answered (names that are not pieces count as done); the answers by name. Failed
    pieces (and those after them) are named and left out."""
    # Fork: the pieces are closures over the run's state, which a forked child has without pickling.
    context = multiprocessing.get_context("fork")
    needs = {name: {other for other in (after or {}).get(name, ()) if other in pieces} for name in pieces}
    waiting, running, answers, failed = list(pieces), [], {}, set()
    while waiting or running:
        for name in [name for name in waiting if needs[name] & failed]:
            waiting.remove(name)
            failed.add(name)
        ready = [name for name in waiting if needs[name] <= answers.keys()]
        for name in ready[:max(0, workers - len(running))]:
            waiting.remove(name)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(pieces[name], sender), name=name, daemon=True)
            process.start()
            sender.close()
            running.append((name, process, receiver))
        if not running:
            break  # the last failure took every waiting piece with it (without cycles, nothing else can wait)
        finished = wait([receiver for _, _, receiver in running])  # the first to finish frees a place
        name, process, receiver = next(entry for entry in running if entry[2] in finished)
        running.remove((name, process, receiver))
        answer, error = _receive(receiver)
        process.join()
        if error:
            failed.add(name)
            say(f"{name} failed in its worker process ({error}); the run does it in its own process")
        else:
            answers[name] = answer
            on_done(name, answer)
    return answers


def _child(piece: Callable[[], Any], sender) -> None:
    torch.set_num_threads(1)
    try:
        sender.send((piece(), ""))
    except Exception as error:  # noqa: BLE001 - any failure: the parent does the piece again and reports it
        sender.send((None, f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"))
    finally:
        sender.close()


def _receive(receiver) -> tuple[Any, str]:
    try:
        return receiver.recv()
    except EOFError:  # killed before it could answer
        return None, "the process ended without a result"
