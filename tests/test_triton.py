"""The Triton kernels checked without a GPU: tests/triton_interpreted.py under Triton's interpreter."""

import os
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("triton")


# A kernel whose loop a kernel argument bounds, as liftswap's loop kernels' (under the interpreter).
_LOOP_PROBE = """
import torch, triton, triton.language as tl

@triton.jit
def count(x_ptr, n):
    acc = 0.0
    for _ in range(n):
        acc += 1.0
    tl.store(x_ptr, acc)

x = torch.zeros(1)
count[(1,)](x, 3)
assert x.item() == 3.0, x
"""


@pytest.mark.parametrize("sweep", ["default", pytest.param("slow", marks=pytest.mark.slow)])
def test_triton_kernels_under_the_interpreter(sweep):
    """A representative subset by default; ``-m slow`` runs the interpreter's long 3-D sweep.
    The suite runs as one shard per core (``--shard``, tests/conftest.py): it is CPU-bound."""
    import triton

    if tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 2):
        pytest.skip("Triton 3.0's interpreter rejects a constexpr passed on to a helper (compiled kernels are fine)")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TRITON_INTERPRET="1", LIFTSWAP_TRITON="1", OMP_NUM_THREADS="1")
    probe = subprocess.run([sys.executable, "-c", _LOOP_PROBE], env=env, capture_output=True, text=True)
    if "only 0-dimensional arrays" in probe.stderr:  # compiled kernels are fine (test below)
        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot bound a loop by a kernel argument with this numpy (>= 2.4)")
    assert probe.returncode == 0, probe.stderr[-3000:]
    n = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, "triton_interpreted.py")]
    command += ["-m", "slow"] if sweep == "slow" else []
    shards = [
        subprocess.Popen(command + ["--shard", f"{i}/{n}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(n)
    ]
    for shard in shards:
        out, _ = shard.communicate(timeout=900)
        assert shard.returncode == 0, out[-6000:]
        assert " passed" in out and "skipped" not in out, out[-2000:]


def _compile_for_hopper(job) -> str:
    """Build one kernel variant for sm_90; "" if it built without spilling registers (no local
    memory, no stack, where Triton ships cuobjdump), else what went wrong."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from liftswap.ops import cuda as lt, cuda_residual

    name, constexprs, dtype = job
    fn = getattr(lt, name, None) or getattr(cuda_residual, name)
    constexprs = {k: triton.language.float32 if v == "ACC" else v for k, v in constexprs.items()}
    names = fn.arg_names
    signature = {n: "constexpr" if n in constexprs else ("*" + dtype if n.endswith("_ptr") else "i32") for n in names}
    try:
        src = ASTSource(fn, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    except TypeError:  # Triton <= 3.2 names its constants
        src = ASTSource(fn, signature, constants=constexprs)
    cubin = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["cubin"]
    if not cubin:
        return f"{name} {constexprs}: no cubin"
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(cuobjdump):
        return ""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        usage = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
    ok = "REG:" in usage and " LOCAL:0 " in usage and " STACK:0 " in usage
    return "" if ok else f"{name} {constexprs} ({dtype}): {usage}"


def _hopper_variants(lt) -> list[tuple]:
    """Every kernel variant the layers launch ("ACC": the float32 accumulator): (name, constexprs[,
    the dtypes to build it for, else float32 and bfloat16])."""
    jobs = []
    for groups, combine, costs, steps in [(1, False, False, lt._STEPS), (1, True, True, lt._STEPS), (2, True, True, 1), (4, True, False, 1)]:
        jobs.append(("_lift_forward_kernel", dict(G=groups, BASE_P=1.0, BASE_U=0.5, COMBINE=combine, COSTS=costs, ACC="ACC", BLOCK=lt._BLOCK,
                                                  STEPS=steps, OUT=2)))  # fmt: skip
    down2 = dict(ACC="ACC", BLOCK=lt._BLOCK_FUSED, UNROLL=lt._UNROLL_ROWS, KH=0, PH=0, KW=0, PW=0)
    for bases, costs in [((1.0, 0.5), True), ((0.0, 0.0), False)]:
        jobs.append(("_down2_forward_kernel", dict(down2, BASE_P=bases[0], BASE_U=bases[1], COMBINE=True, COSTS=costs, LAYOUT=0, OUT=2)))
    # the preserve mode: its stride-1 max pool inside (ResNet's 3x3 window, in training: with the
    # costs, 190 registers; VGG's 2x2), in one dtype each (a build takes about a minute; the other
    # dtypes, and the 3x3 window without the costs, 142 registers, built without spills too)
    jobs.append(("_down2_forward_kernel", dict(down2, BASE_P=0.0, BASE_U=0.0, COMBINE=True, COSTS=True, LAYOUT=2, OUT=2, KH=3, PH=1, KW=3, PW=1),
                 ("bf16",)))  # fmt: skip
    jobs.append(("_down2_forward_kernel", dict(down2, BASE_P=0.0, BASE_U=0.0, COMBINE=True, COSTS=True, LAYOUT=0, OUT=2, KH=2, PH=0, KW=2, PW=0),
                 ("fp32",)))  # fmt: skip
    for layout in ("polyphase", "approximation"):  # lift_down_pool_bands
        jobs.append(("_down2_forward_kernel", dict(down2, BASE_P=0.0, BASE_U=0.0, COMBINE=layout == "approximation", COSTS=True,
                                                   LAYOUT=lt._LAYOUT[layout], OUT=0)))  # fmt: skip
    for groups, from_gy, gamma in [(1, False, False), (2, True, True), (2, False, True)]:
        jobs.append(("_lift_backward_kernel", dict(G=groups, BASE_P=1.0, BASE_U=0.5, FROM_GY=from_gy, GAMMA=gamma, ACC="ACC",
                                                   BLOCK=lt._BLOCK_BACKWARD, UNROLL=lt._UNROLL_STEPS, OUT=2, KC=gamma)))  # fmt: skip
    for up in (0, 1, 2):  # the stacked bands; a 2-D up pool's, read in place (2: with the detail term)
        jobs.append(("_unlift_forward_kernel", dict(BASE_P=1.0, BASE_U=0.5, BLOCK=lt._BLOCK, STEPS=lt._STEPS, UP=up, OUT=2)))
    for k, pad in (((3, 3), (1, 1)), ((2, 2), (0, 0))):
        pool = dict(KH=k[0], KW=k[1], PH=pad[0], PW=pad[1], DH=1, DW=1, BLOCK=lt._BLOCK, ROWS=lt._max_pool_rows(k[0], 1, 112))
        jobs += [("_max_pool_forward_kernel", dict(pool, CODES=codes)) for codes in (True, False)]
        jobs.append(("_max_pool_backward_kernel", pool))
    for detail_term in (True, False):
        jobs.append(("_up2_forward_kernel", dict(DETAIL_TERM=detail_term, BASE_P=1.0, BASE_U=0.5, BLOCK=lt._BLOCK_FUSED,
                                                 UNROLL=lt._UNROLL_ROWS, OUT=2 if detail_term else 0)))
    for up in (0, 1, 2):
        jobs.append(("_unlift_backward_kernel", dict(BASE_P=1.0, BASE_U=0.5, BLOCK=lt._BLOCK_BACKWARD, UP=up, UNROLL=lt._UNROLL_STEPS, OUT=2,
                                                     GAMMA=up == 2)))  # fmt: skip
    for gamma in (False, True):  # the weights' (and gamma's) gradients from the per-program sums
        jobs.append(("_grad_sums_kernel", dict(GAMMA=gamma, ACC="ACC", BLOCK_R=lt._SUMS_ROWS, BLOCK_C=lt._SUMS_COLUMNS)))
    # sizes that chunks do not divide take fewer per thread (14 rows: 7 and 7), as at 28x28 and 14x14
    # (the loop kernels take their rows and positions per thread as an argument: one build serves all)
    jobs.append(("_lift_forward_kernel", dict(G=1, BASE_P=1.0, BASE_U=0.5, COMBINE=False, COSTS=False, ACC="ACC", BLOCK=lt._BLOCK,
                                              STEPS=lt._per_thread(7, lt._STEPS), OUT=0)))  # fmt: skip
    for k in (5, 7, 15):  # kernel sizes other than 3: the residual kernels (liftswap/ops/cuda_residual.py)
        jobs.append(("_residual_forward_kernel", dict(K=k, BLOCK=256)))
        jobs.append(("_residual_backward_kernel", dict(K=k, ACC="ACC", BLOCK=256)))
    return jobs


def test_triton_kernels_compile_for_hopper():
    """Every kernel variant the layers launch compiles to sm_90 code without spilling registers,
    for float32 and bfloat16 tensors (Triton's own ptxas and cuobjdump; no GPU needed). The
    builds run in one process per core."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pytest.importorskip("triton.compiler")
    from liftswap.ops import cuda as lt

    jobs = [(name, constexprs, dtype) for dtype in ("fp32", "bf16") for name, constexprs, *only in _hopper_variants(lt)
            if not only or dtype in only[0]]  # fmt: skip
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        with ProcessPoolExecutor(max(1, min(n, 8)), mp_context=multiprocessing.get_context("fork")) as pool:
            problems = [p for p in pool.map(_compile_for_hopper, jobs) if p]
    except TypeError as e:
        pytest.skip(f"this Triton's ASTSource differs: {e}")
    assert not problems, "\n".join(problems)


def test_positions_per_thread_spread_evenly():
    """Chunks of an axis as full as they can be: as many chunks as ``most`` per thread needs, and
    fewer than one idle position per chunk (a thread's idle positions still issue instructions)."""
    from liftswap.ops import cuda as lt

    for most in (1, 3, 6, 8):
        for n in range(1, 130):
            k = lt._per_thread(n, most)
            chunks = -(-n // k)
            assert k <= most and chunks == -(-n // most), (n, most, k)
            assert chunks * k - n < chunks, (n, most, k)


def test_positions_per_thread_fill_the_gpu(monkeypatch):
    """The loop kernels' rows / positions per thread: as many as allowed (28 of an axis of 56 at
    most 32) where the grid fills the GPU, halved (down to 4) while it has fewer programs than
    _PROGRAMS_PER_SM per SM; no halving where there is no GPU to fill (the interpreter's CPU)."""
    import torch

    from liftswap.ops import cuda as lt

    monkeypatch.setattr(lt, "_sm_count", lambda device: 132 if device.type == "cuda" else 0)
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    target = lt._PROGRAMS_PER_SM * 132
    for planes in (1, 8, 64, 512, 4096):
        def programs(k, planes=planes):
            return planes * -(-56 // k)

        k = lt._per_thread_filling(56, 32, programs, gpu)
        assert 4 <= k <= 28 and (programs(k) >= target or k <= 4), (planes, k)
        if k < 28:  # halved only as far as needed: twice as many per thread had too few programs
            assert programs(lt._per_thread(56, 2 * k)) < target, (planes, k)
        assert lt._per_thread_filling(56, 32, programs, cpu) == 28
    assert lt._per_thread_filling(3, 32, lambda k: 1, gpu) == 3  # an axis shorter than 4 stays whole
