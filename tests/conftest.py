import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def cli_here(monkeypatch, capsys):
    """The command line's ``main()`` in this process (no interpreter start-up per case); returns
    a CompletedProcess like subprocess.run. Tests that need a real process use a subprocess."""
    from liftswap.cli import main

    def run(*args, cwd):
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["liftswap", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def _backends() -> list[str]:
    from liftswap.ops import cpu

    return ["reference"] + (["cpu"] if cpu.available() else [])


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Runs the test on each backend present here: the PyTorch reference, and the CPU kernel where
    it is built (the Triton kernels: tests/test_triton.py; CUDA: tests/test_cuda.py)."""
    from liftswap.ops import cpu

    with cpu.enabled(request.param == "cpu"):
        yield request.param


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, help="I/N: run every N-th collected test from the I-th (0-based)")


def pytest_collection_modifyitems(config, items):
    """``--shard I/N`` keeps items I, I + N, ...: tests/test_triton.py runs the interpreter suite
    as parallel shards (one process per core)."""
    shard = config.getoption("--shard")
    if shard is None:
        return
    i, n = (int(v) for v in shard.split("/"))
    kept = [item for k, item in enumerate(items) if k % n == i]
    config.hook.pytest_deselected(items=[item for k, item in enumerate(items) if k % n != i])
    items[:] = kept
