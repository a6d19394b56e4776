"""The Triton kernels checked without a GPU: tests/triton_interpreted.py under Triton's interpreter."""

import os
import subprocess
import sys
import tempfile

import pytest

pytest.importorskip("triton")


@pytest.mark.parametrize("sweep", ["default", pytest.param("slow", marks=pytest.mark.slow)])
def test_triton_kernels_under_the_interpreter(sweep):
    """A representative subset by default; ``-m slow`` runs the interpreter's long 3-D sweep."""
    import triton

    if tuple(int(v) for v in triton.__version__.split(".")[:2]) < (3, 2):
        pytest.skip("Triton 3.0's interpreter rejects a constexpr passed on to a helper (compiled kernels are fine)")
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TRITON_INTERPRET="1", LIFTSWAP_TRITON="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, "triton_interpreted.py")]
        + (["-m", "slow"] if sweep == "slow" else []),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_triton_kernels_compile_for_hopper(dtype):
    """Every kernel variant the layers launch compiles to sm_90 code without spilling registers
    (Triton's own ptxas and cuobjdump; no GPU needed)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from liftswap.ops import cuda as lt

    def build(fn, **constexprs):
        names = fn.arg_names
        signature = {n: "constexpr" if n in constexprs else ("*" + dtype if n.endswith("_ptr") else "i32") for n in names}
        try:
            src = ASTSource(fn, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
        except TypeError:  # Triton <= 3.2 names its constants
            try:
                src = ASTSource(fn, signature, constants=constexprs)
            except TypeError as e:
                pytest.skip(f"this Triton's ASTSource differs: {e}")
        return triton.compile(src, target=GPUTarget("cuda", 90, 32))

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")

    def check(kernel) -> None:
        """Built, and (where Triton ships cuobjdump) no register spills: no local memory, no stack."""
        cubin = kernel.asm["cubin"]
        assert cubin
        if not os.path.exists(cuobjdump):
            return
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(cubin)
            f.flush()
            usage = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True).stdout
        assert "REG:" in usage and " LOCAL:0 " in usage and " STACK:0 " in usage, usage

    acc = triton.language.float32
    for groups, combine, costs in [(1, False, False), (2, True, True), (4, True, False)]:
        check(build(lt._lift_forward_kernel, G=groups, BASE_P=1.0, BASE_U=0.5, COMBINE=combine, COSTS=costs, ACC=acc, BLOCK=lt._BLOCK))
    for bases, costs in [((1.0, 0.5), True), ((0.0, 0.0), False)]:
        check(build(lt._down2_forward_kernel, BASE_P=bases[0], BASE_U=bases[1], COMBINE=True, COSTS=costs, ACC=acc, BLOCK=lt._BLOCK_FUSED, LAYOUT=0, ROWS=lt._ROWS))
    for layout, combine in [(1, False), (2, True)]:  # lift_down_pool_bands: polyphase, approximation
        check(build(lt._down2_forward_kernel, BASE_P=0.0, BASE_U=0.0, COMBINE=combine, COSTS=True, ACC=acc, BLOCK=lt._BLOCK_FUSED, LAYOUT=layout, ROWS=lt._ROWS))
    for groups, from_gy, gamma in [(1, False, False), (2, True, True), (2, False, True)]:
        check(build(lt._lift_backward_kernel, G=groups, BASE_P=1.0, BASE_U=0.5, FROM_GY=from_gy, GAMMA=gamma, ACC=acc,
                    BLOCK=lt._BLOCK_BACKWARD, STEPS=lt._STEPS))  # fmt: skip
    for from_gy, gamma in [(True, True), (False, False)]:
        check(build(lt._relift_backward_kernel, G=2, BASE_P=0.0, BASE_U=0.0, FROM_GY=from_gy, GAMMA=gamma, ACC=acc, BLOCK=lt._BLOCK_BACKWARD))
    check(build(lt._unlift_forward_kernel, BASE_P=1.0, BASE_U=0.5, BLOCK=lt._BLOCK))
    for k, pad in (((3, 3), (1, 1)), ((2, 2), (0, 0))):
        constexprs = dict(KH=k[0], KW=k[1], PH=pad[0], PW=pad[1], DH=1, DW=1, BLOCK=lt._BLOCK, ROWS=lt._max_pool_rows(k[0], 1))
        for codes in (True, False):
            check(build(lt._max_pool_forward_kernel, CODES=codes, **constexprs))
        check(build(lt._max_pool_backward_kernel, **constexprs))
    for detail_term in (True, False):
        check(build(lt._up2_forward_kernel, DETAIL_TERM=detail_term, BASE_P=1.0, BASE_U=0.5, BLOCK=lt._BLOCK_FUSED, STEPS=lt._STEPS))
    check(build(lt._unlift_backward_kernel, BASE_P=1.0, BASE_U=0.5, BLOCK=lt._BLOCK_BACKWARD, STEPS=lt._STEPS))
