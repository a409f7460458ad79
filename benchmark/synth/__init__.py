"""Synthetic apical echocardiography with a known posterior of EF (equations in docs/synthetic.md).

``benchmark.synth.generate.generate(format, n, out, seed)`` writes a dataset in the on-disk layout of
EchoNet-Dynamic, EchoNet-Pediatric or CAMUS 2023, plus ``oracle.csv`` (exact posteriors of EF) and the
marker ``SYNTHETIC.md``. Submodules are imported on use: this package must stay cheap to import.
"""
