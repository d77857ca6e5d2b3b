"""Baseline (c) for the serving benchmark: a minimal custom ``kserve.Model`` in eager PyTorch.

Written the way KServe's custom-model guide shows it: load the network in ``load()``, decode the
base64 image and run the network in ``predict()``, served by ``kserve.ModelServer``.

    python benchmarks/kserve_baseline_server.py --weights FILE --classes N --threads T --http_port P
        [--algorithm resnet50]
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from typing import Any

import torch
from PIL import Image
from torchvision import models, transforms

parser = argparse.ArgumentParser()
parser.add_argument("--weights", required=True)
parser.add_argument("--algorithm", default="resnet50", help="a torchvision model builder (default resnet50)")
parser.add_argument("--classes", type=int, required=True)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--http_port", type=int, default=8080)
options, _ = parser.parse_known_args()
sys.argv = [*sys.argv[:1], f"--http_port={options.http_port}", "--enable_grpc=false"]

import kserve  # noqa: E402  (reads sys.argv when imported)
from safetensors.torch import load_file  # noqa: E402


class ResNet50(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str):
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        torch.set_num_threads(options.threads)
        self.network = getattr(models, options.algorithm)(num_classes=options.classes)
        self.network.load_state_dict(load_file(options.weights))
        self.network.eval()
        self.transform = transforms.Compose([
            transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        image = Image.open(io.BytesIO(base64.b64decode(payload["instances"][0]["image"]["b64"]))).convert("RGB")
        with torch.no_grad():
            scores = torch.softmax(self.network(self.transform(image).unsqueeze(0)), dim=1)[0]
        return {"predictions": [scores.tolist()]}


if __name__ == "__main__":
    kserve.ModelServer(workers=1).start([ResNet50("baseline")])
