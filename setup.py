"""Builds the fused CPU kernel (liftswap/ops/lift_kernel.cpp) into the package.

The kernel is plain C++ called through ctypes (no Python or torch headers), compiled once per
instruction-set level: baseline, x86-64-v3 (AVX2, FMA) and x86-64-v4 (AVX-512) on x86-64, the
baseline elsewhere. liftswap picks the best one the CPU runs when it loads. OpenMP is used where
the compiler has it. A failed build leaves liftswap working on the PyTorch path, with a warning.
Everything else (metadata, dependencies) is in pyproject.toml.
"""

import hashlib
import json
import os
import platform

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE = "liftswap/ops/lift_kernel.cpp"
FLAGS = ["-O3", "-g0", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-fno-tree-loop-distribute-patterns"]
X86 = platform.machine().lower() in ("x86_64", "amd64")
LEVELS = {"baseline": [], "x86_64_v3": ["-march=x86-64-v3"], "x86_64_v4": ["-march=x86-64-v4"]} if X86 else {"baseline": []}


class BuildKernel(build_ext):
    """Builds each level as a shared library, with OpenMP where the compiler takes it, and writes
    the libraries' SHA-256 beside them (liftswap checks them before loading)."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the levels compile independently
            self.parallel = os.cpu_count() or 1

    def get_export_symbols(self, ext):
        return []  # not a Python module: no PyInit_ function to export

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception:  # noqa: BLE001 - e.g. Apple clang without -fopenmp: build without it
            if "-fopenmp" not in ext.extra_compile_args:
                raise
            ext.extra_compile_args = [a for a in ext.extra_compile_args if a != "-fopenmp"]
            ext.extra_link_args = [a for a in ext.extra_link_args if a != "-fopenmp"]
            super().build_extension(ext)

    def run(self):
        super().run()
        manifest = {}
        for ext in self.extensions:
            path = self.get_ext_fullpath(ext.name)
            if os.path.exists(path):
                with open(path, "rb") as f:
                    manifest[os.path.basename(path)] = hashlib.sha256(f.read()).hexdigest()
        if manifest:
            folder = os.path.dirname(self.get_ext_fullpath(self.extensions[0].name))
            with open(os.path.join(folder, "lift_kernel.json"), "w") as f:
                json.dump(manifest, f, indent=1, sort_keys=True)


def kernel(level: str, flags: list) -> Extension:
    return Extension(
        f"liftswap.ops._lift_kernel_{level}",
        sources=[SOURCE],
        language="c++",
        extra_compile_args=FLAGS + flags + ["-fopenmp"],
        extra_link_args=["-fopenmp"],
        optional=True,  # no compiler: liftswap still installs and runs its PyTorch path
    )


setup(ext_modules=[kernel(level, flags) for level, flags in LEVELS.items()], cmdclass={"build_ext": BuildKernel})
