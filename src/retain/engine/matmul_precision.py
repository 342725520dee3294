"""TensorFloat-32 for one run: fp32 weights and optimizer, matmul inputs rounded to a 10-bit mantissa.

On NVIDIA GPUs from Ampere on, fp32 matrix products run several times faster as TF32; PyTorch
leaves that off for matmuls by default, so an fp32 run on a GPU pays full fp32 price. The switch is
process-wide (``torch.backends``), while a process may run several runs one after another (a
sweep, a notebook): each run sets it for its own duration and puts back what it found, so one
run's choice never leaks into the next. It has no effect on the CPU.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch


@contextlib.contextmanager
def tf32_matmuls(enabled: Optional[bool]) -> Iterator[None]:
    """Within the block, allow (True) or forbid (False) TF32 in CUDA matmuls and cuDNN convolutions;
    None leaves PyTorch's settings as they are. The settings found are restored on the way out."""
    if enabled is None:
        yield
        return
    found = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = found
