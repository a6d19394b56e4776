"""The operators and their backends: one ``torch.library`` operator per layer family
(:mod:`.operators`), implemented by the fused CPU kernel (:mod:`.cpu`), the Triton kernels for CUDA
(:mod:`.cuda`) and the PyTorch reference (:mod:`.reference`); :mod:`.onnx` writes their ONNX graphs."""

from .operators import down_pool, max_pool_stride1, up_pool
from .reference import OperatorWeights

__all__ = ["down_pool", "up_pool", "max_pool_stride1", "OperatorWeights"]
