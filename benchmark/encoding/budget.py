"""What a pre-flight may cost on this machine, held to before it costs it.

The pre-flights build each component with the experiment's sizes and run it once: the encoder's first
(``encoding.preflight``), then every model's (``training.preflight``, a later stage that imports this one). Every
size has a range, but sizes inside their ranges can together ask for more than a machine has: an ensemble of 32
members 2048 wide and 16 deep holds 8 GB of parameters, tiny3d 2048 wide asked 137 GB for one 512-px, 256-frame
clip, a DDPM sampler through 10000 timesteps of a wide network computed for minutes. So:
- ``estimate`` builds a component on torch's meta device, where tensors have shapes but no data, and holds the
  training state of its parameters to the ``Budget`` before anything is allocated;
- a head's sampling is held to it by the network evaluations the head declares (``training.preflight``);
- ``limited`` runs the real pre-flight with the process's address space limited to the budget: the allocation that
  would pass it (the 137 GB of one convolution's output) is refused by the kernel at once, before anything is
  written into it, and ``refused`` tells that failure from the component's own errors.
Activations are not estimated on meta: a forward pass there imports torch._dynamo (1.5 s, through the Python meta
kernels of batch norm, linear layers...) and runs each operation slower than the CPU does, seconds more for every
``validate``; the address-space limit stops the same allocations for nothing.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# Floating-point operations a model's pre-flight may ask of its sampler, counted before it samples. MCSDR at the
# widest of its own search space (512 wide, deep attention, 50 DDIM steps) takes 2e10, DDPM through the reference's
# 1000 timesteps 2.5e10 at its width and just under 1e11 at 512, CARD through 1000 timesteps 1.4e10; DDPM through 10000
# timesteps of a 2048-wide network 1.5e13, half an hour of a CPU for 15 samples of a run's thousands.
MODEL_FLOPS = 1e11
# Per parameter of a trained component, in its training state: itself, its gradient and AdamW's two moments.
TRAINING_COPIES = 4
# While a component is built on meta, a tensor it asks for by size with fewer numbers than this, or without a size
# (torch.linspace, torch.arange), is made on the CPU, with data: a constructor reads such tensors (the ensemble's
# member seeds, drop-path rates by depth, a noise schedule), and they cost nothing. Its weights have shapes only.
SMALL = 2**16
META = torch.device("meta")
BUDGET_POINT = "its budget"  # where a pre-flight fails that an estimate refused, before anything is built for real


class OverBudget(Exception):
    """A pre-flight would take more than its budget: the message gives the figures and what to lower."""


@dataclass(frozen=True)
class Budget:
    """The most a pre-flight may hold at once (bytes) and compute (FLOPs), why, and what to lower past them."""

    memory: int
    flops: float
    memory_source: str
    hint: str

    @classmethod
    def here(cls, device: torch.device, hint: str, flops: float = float("inf")) -> Budget:
        """Half of what this process can still allocate, or of the CUDA device's memory where training runs on one
        with less: the estimate counts tensors, not the allocator's slack, the activations of a run's batches or the
        Python objects around them, and the machine is not the pre-flight's alone."""
        memory, source = _allocatable()
        if device.type == "cuda":
            total = torch.cuda.get_device_properties(device).total_memory
            if total < memory:
                memory, source = total, f"memory of {device}, where the experiment trains"
        return cls(memory // 2, flops, f"half of the {_gb(memory)} {source}", hint)

    def check(self, held: int = 0, flops: float = 0, what: str = "") -> None:
        """Raise OverBudget where ``held`` bytes (of ``what``) or ``flops`` pass this budget."""
        if held > self.memory:
            raise OverBudget(f"{_gb(held)}{f' ({what})' if what else ''}, over the {self.limit}. {self.hint}")
        if flops > self.flops:
            raise OverBudget(f"{flops:.1e} floating-point operations, over the {self.flops:.0e} a pre-flight may "
                             f"compute (it takes seconds: a run repeats it thousands of times). {self.hint}")

    @property
    def limit(self) -> str:
        return f"{_gb(self.memory)} a pre-flight may take here ({self.memory_source})"


class _MetaBuild(TorchDispatchMode):
    """Under ``torch.device("meta")``, where a build asks for every new tensor on meta: a tensor asked for by size
    (``torch.empty(size)``: a weight) of at least SMALL numbers gets a shape only, any other made from nothing is made
    on the CPU, for real (``torch.linspace``, ``torch.randint(..., (members,))``: what a constructor reads, small).
    Made on the CPU, they also skip meta's Python kernels for them, which import torch._dynamo (1.5 s). Stops the
    build once the tensors it made from nothing (its parameters and buffers, not what it computes from them) pass
    the budget, which they would pass anyway: finishing the count of a constructor asked for a billion layers could
    take as long as the build it spares."""

    def __init__(self, budget: Budget):
        super().__init__()
        self.budget, self.made = budget, 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing is compiled in a build; True imports torch._dynamo to keep it so

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if any(isinstance(value, torch.Tensor) for value in tree_leaves((args, kwargs))):
            return func(*args, **kwargs)
        if kwargs.get("device") == META:
            names = [argument.name for argument in func._schema.arguments]
            size = kwargs.get("size", args[names.index("size")] if "size" in names[:len(args)] else None)
            if size is None or math.prod(size) < SMALL:
                kwargs = {**kwargs, "device": torch.device("cpu")}
        out = func(*args, **kwargs)
        self.made += sum(tensor.numel() * tensor.element_size() for tensor in tree_leaves(out)
                         if isinstance(tensor, torch.Tensor))
        if self.made > self.budget.memory:
            raise OverBudget(f"more than {_gb(self.made)} (its parameters alone, when its build was stopped), over "
                             f"the {self.budget.limit}. {self.budget.hint}")
        return out


def estimate(build: Callable[[], Any], budget: Budget, trained: bool = True) -> Any:
    """``build()`` on the meta device; OverBudget, saying so, when its parameters' training state (TRAINING_COPIES
    each where ``trained``) and buffers pass ``budget``. Returns what was built there (shapes, no data) for further
    estimates.

    A constructor that reads the value of a large tensor (``.item()``, an ``if`` on a tensor) cannot run on meta,
    where tensors have none: it gives None, and the real pre-flight builds the component as before budgets, under
    ``limited``. Refusing it would refuse a valid component for how it is written."""
    try:
        with torch.device("meta"), _MetaBuild(budget):
            built = build()
        modules = [part for part in tree_leaves(built) if isinstance(part, torch.nn.Module)]
        size = sum(p.numel() * p.element_size() * (TRAINING_COPIES if trained and p.requires_grad else 1)
                   for module in modules for p in (*module.parameters(), *module.buffers()))
        budget.check(held=size, what="its parameters with their gradients and AdamW's two moments, and its buffers"
                     if trained else "its parameters and buffers")
    except OverBudget as over:
        raise OverBudget(f"built on the meta device (nothing allocated), it takes {over}") from None
    except Exception:  # see above
        return None
    return built


_held_to: list[Budget] = []  # the budget ``limited`` holds the address space to, while it does


@contextlib.contextmanager
def limited(budget: Budget) -> Iterator[None]:
    """The process's address space limited to what it has mapped plus ``budget.memory`` while the block runs: an
    allocation that would pass it fails at once, before anything is written into it (``refused`` says so). A tighter
    limit already set (``ulimit -v``: the budget is half of what it leaves) is kept."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = _mapped()
    limit = mapped + budget.memory
    tighter = mapped > 0 and (soft == resource.RLIM_INFINITY or limit < soft)  # no VmSize (no Linux /proc): no limit
    _held_to.append(budget)
    try:
        if tighter:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        yield
    finally:
        if tighter:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        _held_to.pop()


def refused(error: BaseException) -> str | None:
    """What ``error`` means when it is an allocation refused inside ``limited`` (torch's CPU allocator, or NumPy's
    MemoryError): the bytes asked for where torch says, past the budget; None for any other error."""
    if not _held_to or not isinstance(error, MemoryError) and "can't allocate memory" not in str(error):
        return None
    budget = _held_to[-1]
    asked = re.search(r"allocate (\d+) bytes", str(error))
    allocation = f"an allocation of {_gb(int(asked.group(1)))}" if asked else "an allocation"
    return f"{allocation} would take it past the {budget.limit}. {budget.hint}"


def _allocatable() -> tuple[int, str]:
    """The bytes this process can still allocate, and what says so: the memory the kernel counts as available
    (free, and caches it can drop), and under an address-space limit (``ulimit -v``) what is left of it."""
    try:
        meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
        available, source = int(meminfo["MemAvailable"].split()[0]) * 1024, "memory available on this machine"
    except (OSError, KeyError, ValueError):  # no Linux /proc: the physical memory
        available, source = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "memory of this machine"
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    left = limit - _mapped() if limit != resource.RLIM_INFINITY else available
    if left < available:
        return max(left, 0), "address space left to this process under its limit (ulimit -v)"
    return available, source


def _mapped() -> int:
    """The address space this process has mapped (VmSize), 0 where Linux does not show it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _gb(size: float) -> str:
    return f"{size / 1e9:.1f} GB"
