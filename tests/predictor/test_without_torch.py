"""The serving path needs no torch, and sees exactly the input the trainer evaluated on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from galley.model.preprocessing import Preprocessing, decode_image
from galley.trainer import transforms

# Run in a child with torch made unimportable, as in the predictor image, which has none.
_WITHOUT_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "safetensors"):
            raise ImportError(f"{name} is not installed in the predictor image")
sys.meta_path.insert(0, _NoTorch())
import asyncio, base64, json, pathlib
from galley.predictor.model import GalleyModel
model = GalleyModel(None, sys.argv[1])
model.load()
photo = base64.b64encode(pathlib.Path(sys.argv[2]).read_bytes()).decode()
batch = asyncio.run(model.preprocess({"instances": [{"image_bytes": {"b64": photo}}]}))
answer = asyncio.run(model.postprocess(asyncio.run(model.predict(batch))))
print(json.dumps({"runtime": model.runtime.name, "answer": answer,
                  "torch": any(m.split(".")[0] == "torch" for m in sys.modules)}, ensure_ascii=False))
"""


@pytest.mark.slow
def test_a_package_is_served_with_torch_unimportable(trained_package: Path, food_photos: Any) -> None:
    import json

    photo = sorted(Path(food_photos.root).rglob("*.jpg"))[0]
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(trained_package), str(photo)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served["runtime"] in ("onnxruntime", "onnxruntime-int8")
    assert served["torch"] is False
    scores = served["answer"]["predictions"][0]["scores"]
    assert len(scores) == 4 and abs(sum(score for _, score in scores) - 1.0) < 1e-3


@pytest.mark.parametrize("size", [(640, 480), (300, 900), (120, 120), (97, 311), (146, 147), (147, 146), (151, 149)])
def test_predictor_input_equals_the_trainers_evaluation_input(size: tuple[int, int]) -> None:
    from io import BytesIO

    from PIL import Image

    rng = np.random.default_rng(sum(size))
    buffer = BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, "JPEG")
    image = decode_image(buffer.getvalue())
    preprocessing = Preprocessing.for_size(128)

    served = preprocessing.eval_input(image)
    trained = transforms.eval_from_cache(preprocessing)(transforms.cache_transform(preprocessing)(image)).numpy()

    assert served.shape == (3, 128, 128) and served.dtype == np.float32
    assert np.array_equal(served, trained)
