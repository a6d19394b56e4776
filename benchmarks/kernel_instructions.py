"""What the Triton kernels cost in instructions, counted without a GPU: sm_90 builds' SASS.

Each kernel variant a 2-D layer launches is compiled for sm_90 (Triton's own ptxas, as
tests/test_triton.py does) and its SASS counted with cuobjdump. A program runs each instruction
once per warp, those inside a loop (a backward branch: the one-axis backward kernels loop over
their positions) once per trip: a launch costs ``instructions x warps / elements per program``
warp-instructions per element. Summed over a
layer call's launches and put per output position of a 2-D down pool (one 2x2 window of x),
this is the arithmetic a GPU must issue per output, next to the bytes it must move.

Three times follow per call at batch 64, 64x112x112 (12.8 M outputs), as a model of an H200 (its
issue rate: 132 SMs x 4 warp-instructions per clock x 1.98 GHz; its special-function units, which
run MUFU (2^x, 1/x): 16 lanes per SM per clock, a warp-instruction per 2 clocks; its memory:
4.8 TB/s), not a measurement: issue-bound (warp-instructions / issue rate), MUFU-bound (MUFU
warp-instructions / their rate) and memory-bound (bytes / bandwidth). The largest bounds the
call: where it is an instruction bound, fewer bytes or launches gain little and fewer
instructions (of that kind) gain in proportion; ``benchmarks/gpu_goals.py`` measures the real
thing on a GPU.

    python benchmarks/kernel_instructions.py [--out benchmarks/results/kernel_instructions.json]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

from benchutil import write_json

ISSUE_PER_S = 132 * 4 * 1.98e9  # H200: warp-instructions per second, all SMs
MUFU_PER_S = 132 * 16 / 32 * 1.98e9  # H200: MUFU warp-instructions per second (16 lanes / SM / clock)
BYTES_PER_S = 4.8e12  # H200: HBM3e
OUTPUTS = 64 * 64 * 56 * 56  # batch 64, 64x112x112 pooled to 56x56


def _build(fn, constexprs: dict):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = fn.arg_names
    signature = {n: "constexpr" if n in constexprs else ("*fp32" if n.endswith("_ptr") else "i32") for n in names}
    try:
        src = ASTSource(fn, signature, constexprs={(names.index(k),): v for k, v in constexprs.items()})
    except TypeError:  # Triton <= 3.2 names its constants
        src = ASTSource(fn, signature, constants=constexprs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32))


def _sass_counts(kernel, trips: int = 1) -> collections.Counter:
    """Instructions by opcode, each inside a loop (from a backward branch's target to it) ``trips`` times."""
    import triton

    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        sass = subprocess.run([cuobjdump, "-sass", f.name], capture_output=True, text=True, check=True).stdout
    code = []  # (address, opcode, operands)
    for line in sass.splitlines():
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(.*)", line)
        if m:
            code.append((int(m.group(1), 16), m.group(2), m.group(3)))
    loops = []
    for address, op, rest in code:
        target = re.search(r"0x([0-9a-f]+)", rest) if op == "BRA" else None
        if target and int(target.group(1), 16) < address:
            loops.append((int(target.group(1), 16), address))
    ops = collections.Counter()
    for address, op, _ in code:
        if op not in ("NOP", "EXIT", "BRA"):
            ops[op] += trips if any(a <= address <= b for a, b in loops) else 1
    return ops


def _launches(lt, acc) -> dict[str, list[tuple]]:
    """Each layer call: its launches as (kernel, constexprs, elements per program, launched
    elements per 2-D down-pool output[, trips of its loop]). Haar init (bases 1, 0.5), gated
    output, no details returned, training with costs.
    Launches along W have B = 1 (the stride between neighbours), which Triton's launcher compiles
    as a constant (it specialises integer arguments equal to 1), so the builds here do too."""
    haar = dict(BASE_P=1.0, BASE_U=0.5)
    gated = lt._OUT["gated"]
    along_w = dict(B=1)
    unroll, unroll_2d = lt._UNROLL_STEPS, lt._UNROLL_ROWS  # positions per trip of the backward loops; rows or positions of the 2-D forwards'
    rows = lt._per_thread(56, lt._ROWS)  # (56 output rows: at batch 64, as many as fill an H200)
    # a layer without return_details writes y alone (LAYOUT 2); a thread owns two columns of `rows` rows
    no_pool = dict(KH=0, PH=0, KW=0, PW=0)
    down_fwd = (lt._down2_forward_kernel, dict(**haar, COMBINE=True, ACC=acc, BLOCK=lt._BLOCK_FUSED, LAYOUT=2, UNROLL=unroll_2d, OUT=gated, **no_pool),
                lt._BLOCK_FUSED * rows * 2, 1, -(-rows // unroll_2d))  # fmt: skip
    steps = int(os.environ.get("LIFTSWAP_TRITON_STEPS", lt._STEPS))
    back = lt._per_thread(56, lt._LOOP_STEPS)  # (either axis has 56 positions)
    trips = -(-back // unroll)
    h_bwd = dict(G=2, **haar, FROM_GY=True, GAMMA=True, ACC=acc, BLOCK=lt._BLOCK_BACKWARD, UNROLL=unroll, OUT=gated, KC=True)
    w_bwd = (lt._lift_backward_kernel, dict(G=1, **haar, FROM_GY=False, GAMMA=False, ACC=acc, BLOCK=lt._BLOCK_BACKWARD, UNROLL=unroll, OUT=gated, KC=True, **along_w),
             lt._BLOCK_BACKWARD * back, 2, trips)  # fmt: skip
    w_lift = (lt._lift_forward_kernel, dict(G=1, **haar, COMBINE=False, COSTS=False, ACC=acc, BLOCK=lt._BLOCK, STEPS=steps, OUT=gated, **along_w),
                lt._BLOCK * steps, 2)  # fmt: skip
    up_fwd = (lt._up2_forward_kernel, dict(**haar, DETAIL_TERM=True, BLOCK=lt._BLOCK_FUSED, UNROLL=unroll_2d, OUT=gated), lt._BLOCK_FUSED * back, 1, -(-back // unroll_2d))
    pool_rows = lt._per_thread(112, lt._POOL_ROWS)
    pool = dict(KH=3, KW=3, PH=1, PW=1, DH=1, DW=1, BLOCK=lt._BLOCK, ROWS=pool_rows)
    lazy = dict(BASE_P=0.0, BASE_U=0.0)  # the preserve mode's max pools: a lazy lift, gated
    lazy_backward = [(w_lift[0], dict(w_lift[1], **lazy), *w_lift[2:]),
                     (lt._lift_backward_kernel, dict(h_bwd, **lazy), lt._BLOCK_BACKWARD * back, 2, trips),
                     (w_bwd[0], dict(w_bwd[1], **lazy), *w_bwd[2:])]  # fmt: skip
    return {
        "LiftDownPool2d fwd, no grad": [(down_fwd[0], dict(down_fwd[1], COSTS=False), *down_fwd[2:])],
        "LiftDownPool2d fwd+bwd (backward: 3 launches, re-lift W)": [
            (down_fwd[0], dict(down_fwd[1], COSTS=True), *down_fwd[2:]),
            w_lift,
            (lt._lift_backward_kernel, h_bwd, lt._BLOCK_BACKWARD * back, 2, trips),  # a program per group
            w_bwd,
        ],
        "LiftUpPool2d fwd": [up_fwd],
        "LiftUpPool2d fwd+bwd (backward: re-unlift H, W, H)": [
            up_fwd,
            # (the H inverses read y and the details in place, with the gated detail term: UP 2)
            (lt._unlift_forward_kernel, dict(**haar, BLOCK=lt._BLOCK, STEPS=steps, UP=2, OUT=gated), lt._BLOCK * steps, 2),
            (lt._unlift_backward_kernel, dict(**haar, BLOCK=lt._BLOCK_BACKWARD, UP=0, UNROLL=unroll, OUT=gated, GAMMA=False, **along_w), lt._BLOCK_BACKWARD * back, 2, trips),
            (lt._unlift_backward_kernel, dict(**haar, BLOCK=lt._BLOCK_BACKWARD, UP=2, UNROLL=unroll, OUT=gated, GAMMA=True), lt._BLOCK_BACKWARD * back, 2, trips),
        ],
        "stride-1 max pool 3x3 fwd, no grad (preserve)": [(lt._max_pool_forward_kernel, dict(pool, CODES=False), lt._BLOCK * pool_rows, 4)],
        "stride-1 max pool 3x3 fwd+bwd (preserve)": [
            (lt._max_pool_forward_kernel, dict(pool, CODES=True), lt._BLOCK * pool_rows, 4),
            (lt._max_pool_backward_kernel, pool, lt._BLOCK * pool_rows, 4),
        ],
        # preserve without grad (its default: a lazy lift, gated, of the 3x3 max pool), the pool inside the lift's kernel
        "preserve max pool 3x3 + lift fwd, no grad (one launch)": [
            (down_fwd[0], dict(down_fwd[1], BASE_P=0.0, BASE_U=0.0, COSTS=False, KH=3, PH=1, KW=3, PW=1), *down_fwd[2:])
        ],
        "preserve max pool 3x3 + lift fwd, no grad (two launches)": [
            (lt._max_pool_forward_kernel, dict(pool, CODES=False), lt._BLOCK * pool_rows, 4),
            (down_fwd[0], dict(down_fwd[1], BASE_P=0.0, BASE_U=0.0, COSTS=False), *down_fwd[2:]),
        ],
        # in training: the forward one launch, its backward runs the pool again (with its winners) before the lift's
        "preserve max pool 3x3 + lift fwd+bwd (forward: one launch)": [
            (down_fwd[0], dict(down_fwd[1], **lazy, COSTS=True, KH=3, PH=1, KW=3, PW=1), *down_fwd[2:]),
            (lt._max_pool_forward_kernel, dict(pool, CODES=True), lt._BLOCK * pool_rows, 4),
            *lazy_backward,
            (lt._max_pool_backward_kernel, pool, lt._BLOCK * pool_rows, 4),
        ],
        "preserve max pool 3x3 + lift fwd+bwd (forward: two launches)": [
            (lt._max_pool_forward_kernel, dict(pool, CODES=True), lt._BLOCK * pool_rows, 4),
            (down_fwd[0], dict(down_fwd[1], **lazy, COSTS=True), *down_fwd[2:]),
            *lazy_backward,
            (lt._max_pool_backward_kernel, pool, lt._BLOCK * pool_rows, 4),
        ],
    }


# Bytes per 2-D down-pool output (float32) each call must move at least, and MaxPool2d(3, 2, 1)'s.
_BYTES = {
    "LiftDownPool2d fwd, no grad": 16 + 4,  # x; y (no detail band: return_details=False)
    "LiftDownPool2d fwd+bwd (backward: 3 launches, re-lift W)": (16 + 4) + (16 + 16) + (16 + 4 + 16) + (16 + 16 + 16),
    "LiftUpPool2d fwd": 16 + 16,  # y and details; x
    # the kernels' (the H inverses read y and the details in place; the last one sums gamma's gradient
    # too), then the PyTorch op after them: the details' gradient (one addcmul)
    "LiftUpPool2d fwd+bwd (backward: re-unlift H, W, H)": (16 + 16) + (16 + 16) + (16 + 16 + 16) + (16 + 16 + 16)
    + (16 + 12),
    "stride-1 max pool 3x3 fwd, no grad (preserve)": 16 + 16,
    "stride-1 max pool 3x3 fwd+bwd (preserve)": (16 + 16 + 4) + (16 + 4 + 16),
    "preserve max pool 3x3 + lift fwd, no grad (one launch)": 16 + 4,  # x; y
    "preserve max pool 3x3 + lift fwd, no grad (two launches)": (16 + 16) + (16 + 4),  # x; h, then h; y
    # x; y, then x; h, codes, the lift's backward from h, the pool's (the same bytes in both orders)
    "preserve max pool 3x3 + lift fwd+bwd (forward: one launch)": (16 + 4) + (16 + 16 + 4) + (16 + 16) + (16 + 4 + 16) + (16 + 16 + 16)
    + (16 + 4 + 16),
    "preserve max pool 3x3 + lift fwd+bwd (forward: two launches)": (16 + 16 + 4) + (16 + 4) + (16 + 16) + (16 + 4 + 16)
    + (16 + 16 + 16) + (16 + 4 + 16),
    "MaxPool2d(3, 2, 1) fwd, no grad": 16 + 4,
    "MaxPool2d(3, 2, 1) fwd+bwd": (16 + 4 + 8) + (4 + 8 + 16 + 16),  # int64 indices; backward zero-fills x's gradient
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "kernel_instructions.json"))
    args = ap.parse_args(argv)
    try:
        import triton
    except ImportError:
        print("error: Triton is not installed (it ships with PyTorch's CUDA wheels on Linux)", file=sys.stderr)
        return 2
    from liftswap.ops import cuda as lt

    acc = triton.language.float32
    rows, cache = [], {}
    print(f"{'call':<58} {'warp-instr':>10} {'MUFU':>6} {'LDG':>6} {'issue us':>9} {'MUFU us':>8} {'memory us':>9}")
    for call, launches in _launches(lt, acc).items():
        total = collections.Counter()
        for fn, constexprs, block, per_output, *loop in launches:
            key = (fn.__name__, tuple(sorted((k, str(v)) for k, v in constexprs.items())))
            if key not in cache:
                kernel = _build(fn, constexprs)
                cache[key] = (_sass_counts(kernel, *loop), kernel.metadata.num_warps)
            ops, warps = cache[key]
            for op, n in ops.items():
                total[op] += n * warps / block * per_output
        instr = sum(total.values())
        row = {
            "call": call,
            "launches": len(launches),
            "warp_instructions_per_output": round(instr, 2),
            "mufu_per_output": round(total["MUFU"], 2),
            "global_loads_per_output": round(total["LDG"], 2),
            "issue_bound_us": round(instr * OUTPUTS / ISSUE_PER_S * 1e6, 1),
            "mufu_bound_us": round(total["MUFU"] * OUTPUTS / MUFU_PER_S * 1e6, 1),
            "memory_bound_us": round(_BYTES[call] * OUTPUTS / BYTES_PER_S * 1e6, 1),
            "top_ops": dict(total.most_common(8)),
        }
        rows.append(row)
        print(f"{call:<58} {instr:10.1f} {total['MUFU']:6.2f} {total['LDG']:6.2f} {row['issue_bound_us']:9.1f} {row['mufu_bound_us']:8.1f} {row['memory_bound_us']:9.1f}")
    for call in ("MaxPool2d(3, 2, 1) fwd, no grad", "MaxPool2d(3, 2, 1) fwd+bwd"):
        us = round(_BYTES[call] * OUTPUTS / BYTES_PER_S * 1e6, 1)
        rows.append({"call": call, "memory_bound_us": us})
        print(f"{call:<58} {'':>10} {'':>6} {'':>6} {'':>9} {'':>8} {us:9.1f}")
    write_json(args.out, {"model": {"issue_per_s": ISSUE_PER_S, "mufu_per_s": MUFU_PER_S, "bytes_per_s": BYTES_PER_S, "outputs": OUTPUTS},
                          "triton": triton.__version__, "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
