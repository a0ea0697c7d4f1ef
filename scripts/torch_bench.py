#!/usr/bin/env python3
"""PyTorch CPU training-step throughput of the 28x28 models, for comparison with
`quadranet bench models --models quadranet-28,hornet-28,convnext-28 --resolution 28 --batch-size 64 --threads 1`.

The models are the PyTorch definitions of scripts/torch_crosscheck.py (the official ConvNeXt,
HorNet and QuadraNet code) built from the same configs as quadranet's registry (QuadraModels/
Registry.swift, `smallModels`); the script checks that their parameter counts equal the ones
given below (those of `quadranet models --json`). One training step is what `bench models` times:
forward, cross-entropy with label smoothing 0.1, backward, AdamW update, gradients cleared, on a
fixed random batch in channels_last memory format. Prints one JSON object.

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install --no-deps /opt/wheels/torch-*.whl
    /work/venv-torch/bin/pip install numpy safetensors typing-extensions sympy networkx jinja2 filelock fsspec mpmath markupsafe
    /work/venv-torch/bin/python scripts/torch_bench.py --threads 1 --batch-size 64 --steps 5
"""

import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_crosscheck import VisionModel  # noqa: E402  (the shared model definitions)

# The 28x28 models of QuadraModels/Registry.swift (`smallModels`), in ModelConfig's JSON form,
# with the parameter counts `quadranet models --json` reports for them.
SMALL_MODELS = {
    "quadranet-28": (
        {"name": "quadranet-28", "inputChannels": 1, "classCount": 10, "stemPatchSize": 2, "depths": [2, 3, 2],
         "widths": [40, 80, 160], "mixers": [{"quadratic": {"kernelSize": 3}}] * 3, "mlpRatio": 2,
         "layerScaleInit": 1.0},
        386050),
    "hornet-28": (
        {"name": "hornet-28", "inputChannels": 1, "classCount": 10, "stemPatchSize": 2, "depths": [1, 1, 2],
         "widths": [40, 80, 160], "mixers": [{"gnConv": {"order": o, "scale": 1.0 / 3.0}} for o in (2, 3, 4)],
         "mlpRatio": 2, "layerScaleInit": 1.0},
        565490),
    "convnext-28": (
        {"name": "convnext-28", "inputChannels": 1, "classCount": 10, "stemPatchSize": 2, "depths": [2, 3, 2],
         "widths": [40, 80, 160], "mixers": [{"depthwise": {"kernelSize": 5}}] * 3, "mlpRatio": 2,
         "layerScaleInit": 1.0},
        381570),
}


MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def positive(limit):
    def parse(text):
        value = int(text)
        if not 1 <= value <= limit:
            raise argparse.ArgumentTypeError(f"must be in 1...{limit}, got {value}")
        return value
    return parse


def measure(name, config, expected_params, batch_size, steps, warmup, memory_format):
    torch.manual_seed(0)
    model = VisionModel(config).to(memory_format=memory_format)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    if params != expected_params:
        sys.exit(f"{name}: the PyTorch model has {params} parameters, quadranet's {expected_params}; "
                 "the definitions differ (update SMALL_MODELS from QuadraModels/Registry.swift)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch_size, config["inputChannels"], 28, 28).to(memory_format=memory_format)
    labels = torch.arange(batch_size) % config["classCount"]

    def step():
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    best = min(times)
    median = sorted(times)[len(times) // 2]
    return {
        "model": name,
        "params": params,
        "train_images_per_second": batch_size / best,
        "train_images_per_second_median": batch_size / median,
        "step_seconds": times,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="quadranet-28,hornet-28,convnext-28",
                        help=f"comma-separated, from {', '.join(SMALL_MODELS)}")
    parser.add_argument("--batch-size", type=positive(4096), default=64, help="images per step, 1...4096")
    parser.add_argument("--threads", type=positive(1024), default=1, help="torch intra-op threads, 1...1024")
    parser.add_argument("--steps", type=positive(1000), default=5, help="timed steps, 1...1000 (best is reported)")
    parser.add_argument("--memory-format", choices=sorted(MEMORY_FORMATS), default="channels_last",
                        help="layout of images and convolution weights (the official code's default is contiguous)")
    parser.add_argument("--warmup", type=positive(100), default=2, help="untimed steps first, 1...100")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in SMALL_MODELS]
    if not names or unknown:
        parser.error(f"--models: unknown {unknown[:4]}; choose from {', '.join(SMALL_MODELS)}")

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    memory_format = MEMORY_FORMATS[args.memory_format]
    results = [measure(n, *SMALL_MODELS[n], args.batch_size, args.steps, args.warmup, memory_format) for n in names]
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "resolution": 28,
        "memory_format": args.memory_format,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "results": results,
    }, indent=1))


if __name__ == "__main__":
    main()
