"""The Triton kernels checked without a GPU: tests/triton_interpreted.py under Triton's interpreter."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")


def test_triton_kernels_under_the_interpreter():
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TRITON_INTERPRET="1", LIFTSWAP_TRITON="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, "triton_interpreted.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
