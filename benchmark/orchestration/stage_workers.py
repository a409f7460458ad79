"""Build the encoder stages of several (split, seed) pairs side by side in forked processes.

Stage 1 and feature extraction run small convolutions, which torch's threads barely speed up on a few
cores; separate processes with one thread each do scale. Each process builds its ``EncoderStage`` for
what it leaves on disk (the stage-1 weights under ``encoders/`` and the feature cache), and the run then
builds the same stages in its own process, where both are found and reloaded. With one torch thread per
process the stored weights and features are bit for bit those of a run with ``encoder.workers = 1`` and
``train.threads = 1`` (``tests/test_stage_workers.py``); a run with more threads sums in another order and
may differ in the last bits, as ``train.threads`` already says.

A process that fails leaves nothing the run trusts (every write is atomic and checked when read): the
run builds that stage itself afterwards and reports the error the usual way.
"""
from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from multiprocessing.connection import wait

import torch

StageBuild = Callable[[], dict[str, float]]  # builds one stage, returns its seconds by stage name


def build_in_processes(builds: dict[str, StageBuild], workers: int,
                       say: Callable[[str], None]) -> dict[str, dict[str, float]]:
    """Run each build in its own forked process, at most ``workers`` at a time; their seconds by name.
    A build that failed is named and left out."""
    # Fork: the builds are closures over the run's state, which a forked child has without pickling.
    context = multiprocessing.get_context("fork")
    waiting, running, seconds = list(builds.items()), [], {}
    while waiting or running:
        while waiting and len(running) < workers:
            name, build = waiting.pop(0)
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(build, sender), name=f"encoder stage {name}", daemon=True)
            process.start()
            sender.close()
            running.append((name, process, receiver))
        ready = wait([receiver for _, _, receiver in running])  # the first to finish frees a place
        name, process, receiver = next(entry for entry in running if entry[2] in ready)
        running.remove((name, process, receiver))
        outcome = _receive(receiver)
        process.join()
        if isinstance(outcome, dict):
            seconds[name] = outcome
        else:
            say(f"encoder stage {name} failed in its worker process ({outcome}); it is built in the run's process")
    return seconds


def _child(build: StageBuild, sender) -> None:
    torch.set_num_threads(1)
    try:
        sender.send(build())
    except Exception as error:  # noqa: BLE001 - any failure: the parent builds the stage again and reports it
        sender.send(f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}")
    finally:
        sender.close()


def _receive(receiver) -> dict[str, float] | str:
    try:
        return receiver.recv()
    except EOFError:  # killed before it could answer
        return "the process ended without a result"
