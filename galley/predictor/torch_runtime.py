"""PyTorch as an inference runtime, for packages without an ONNX graph and for the embedded mode.

Imported only where torch is installed; the predictor image serves ONNX graphs without it.
"""

from __future__ import annotations

import numpy as np
import torch


class TorchRuntime:
    """Eager PyTorch, float32 or with bfloat16 autocast, channels_last."""

    def __init__(self, network: torch.nn.Module, threads: int, bf16: bool = False):
        torch.set_num_threads(threads)
        self.network = network.eval().to(memory_format=torch.channels_last)
        self.threads = threads
        self.bf16 = bf16
        self.name = "pytorch-bf16" if bf16 else "pytorch"

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        if torch.get_num_threads() != self.threads:  # the pool size is per calling thread
            torch.set_num_threads(self.threads)
        tensor = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.network(tensor).float().numpy()
