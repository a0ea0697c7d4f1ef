#!/usr/bin/env python3
"""Cross-check a quadranet checkpoint against PyTorch (not run by CI).

Defines QuadraNet, HorNet and ConvNeXt exactly as the official PyTorch code does (module names,
parameter shapes, NCHW layouts), builds the model described by the checkpoint's `config`
metadata, loads the weights with `load_state_dict(strict=True)` and evaluates the test split
with the normalization stored in the checkpoint. The accuracy should equal `quadranet eval`'s.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install --no-deps /opt/wheels/torch-*.whl
    /tmp/venv/bin/pip install numpy safetensors typing_extensions sympy filelock networkx jinja2 fsspec
    /tmp/venv/bin/python scripts/torch_crosscheck.py runs/quadranet-digits-digits/model.safetensors
    /tmp/venv/bin/python scripts/torch_crosscheck.py CKPT --dataset fashion-mnist --expect 0.9351

Sources of the definitions: ConvNeXt `models/convnext.py` (facebookresearch/ConvNeXt), HorNet
`hornet.py` (raoyongming/HorNet, gnconv with a 7x7 depthwise convolution), QuadraNet `QuadraBlock1_dw`
/ `QuadraConv_dw` (the authors' code): the same macro-architecture with a different token mixer.
"""

import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


# ---------------------------------------------------------------- official building blocks


class LayerNorm(nn.Module):
    """ConvNeXt/HorNet LayerNorm supporting channels_last (default) and channels_first."""

    def __init__(self, normalized_shape, eps=1e-6, data_format="channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x):
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim, kernel_size=7, mlp_ratio=4, layer_scale_init_value=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.drop_path = nn.Identity()

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + self.drop_path(y)


class GnConv(nn.Module):
    """HorNet's recursive gated convolution (hornet.py `gnconv`, 7x7 depthwise)."""

    def __init__(self, dim, order=5, s=1.0):
        super().__init__()
        self.order = order
        self.dims = [dim // 2**i for i in range(order)]
        self.dims.reverse()
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        self.dwconv = nn.Conv2d(sum(self.dims), sum(self.dims), kernel_size=7, padding=3, bias=True, groups=sum(self.dims))
        self.proj_out = nn.Conv2d(dim, dim, 1)
        self.pws = nn.ModuleList([nn.Conv2d(self.dims[i], self.dims[i + 1], 1) for i in range(order - 1)])
        self.scale = s

    def forward(self, x):
        fused = self.proj_in(x)
        pwa, abc = torch.split(fused, (self.dims[0], sum(self.dims)), dim=1)
        dw_list = torch.split(self.dwconv(abc) * self.scale, self.dims, dim=1)
        x = pwa * dw_list[0]
        for i in range(self.order - 1):
            x = self.pws[i](x) * dw_list[i + 1]
        return self.proj_out(x)


class QuadraConvDW(nn.Module):
    """QuadraNet's quadratic depthwise convolution: conv1(x) * conv2(x) + conv3(x)."""

    def __init__(self, dim, kernel_size=7):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(dim, dim, kernel_size, padding=pad, groups=dim)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size, padding=pad, groups=dim)
        self.conv3 = nn.Conv2d(dim, dim, kernel_size, padding=pad, groups=dim)

    def forward(self, x):
        return self.conv1(x) * self.conv2(x) + self.conv3(x)


class MixerBlock(nn.Module):
    """HorNet `Block` / QuadraNet `QuadraBlock1_dw`: x + γ1·mixer(LN(x)), then x + γ2·MLP(LN(x))."""

    def __init__(self, dim, mixer_name, mixer, mlp_ratio=4, layer_scale_init_value=1e-6):
        super().__init__()
        self.norm1 = LayerNorm(dim, eps=1e-6, data_format="channels_first")
        self.mixer_name = mixer_name
        setattr(self, mixer_name, mixer)
        self.drop_path = nn.Identity()
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.gamma2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x):
        c = x.shape[1]
        mixer = getattr(self, self.mixer_name)
        x = x + self.drop_path(self.gamma1.view(c, 1, 1) * mixer(self.norm1(x)))
        y = x.permute(0, 2, 3, 1)
        y = self.gamma2 * self.pwconv2(self.act(self.pwconv1(self.norm2(y))))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class VisionModel(nn.Module):
    """The ConvNeXt macro-architecture shared by the three families, from a quadranet ModelConfig."""

    def __init__(self, config):
        super().__init__()
        widths, depths = config["widths"], config["depths"]
        patch = config["stemPatchSize"]
        # An overlapping stem (kernel > stride) is padded so the output size stays resolution / stride.
        kernel = config.get("stemKernelSize", patch)
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(config["inputChannels"], widths[0], kernel_size=kernel, stride=patch,
                                     padding=(kernel - patch + 1) // 2),
                           LayerNorm(widths[0], eps=1e-6, data_format="channels_first"))]
            + [nn.Sequential(LayerNorm(widths[i], eps=1e-6, data_format="channels_first"),
                             nn.Conv2d(widths[i], widths[i + 1], kernel_size=2, stride=2))
               for i in range(len(widths) - 1)])
        ratio, ls = config["mlpRatio"], config["layerScaleInit"]
        stages = []
        for dim, depth, mixer in zip(widths, depths, config["mixers"]):
            (kind, args), = mixer.items()
            blocks = []
            for _ in range(depth):
                if kind == "quadratic":
                    blocks.append(MixerBlock(dim, "QuadraConv", QuadraConvDW(dim, args["kernelSize"]), ratio, ls))
                elif kind == "gnConv":
                    blocks.append(MixerBlock(dim, "gnconv", GnConv(dim, args["order"], args["scale"]), ratio, ls))
                elif kind == "depthwise":
                    blocks.append(ConvNeXtBlock(dim, args["kernelSize"], ratio, ls))
                else:
                    raise ValueError(f"unknown mixer {kind}")
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = nn.Linear(widths[-1], config["classCount"])

    def forward(self, x):
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean([-2, -1])))


# ---------------------------------------------------------------- data (same splits as QuadraData)

MASK = (1 << 64) - 1


class RandomGenerator:
    """QuadraCore.RandomGenerator: SplitMix64 seeding a xoshiro256**."""

    def __init__(self, seed):
        s = seed & MASK
        state = []
        for _ in range(4):
            s = (s + 0x9E3779B97F4A7C15) & MASK
            z = s
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
            state.append(z ^ (z >> 31))
        self.s = state

    def next(self):
        s = self.s
        x = (s[1] * 5) & MASK
        result = ((((x << 7) | (x >> 57)) & MASK) * 9) & MASK
        t = (s[1] << 17) & MASK
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = ((s[3] << 45) | (s[3] >> 19)) & MASK
        return result

    def bounded(self, bound):
        return (self.next() * bound) >> 64


def stratified_split(labels, class_count, hold_out, seed):
    """DatasetSplitter.stratified: (kept, held_out), both sorted."""
    total = len(labels)
    by_class = [[] for _ in range(class_count)]
    for index, label in enumerate(labels):
        by_class[label].append(index)
    quotas = [len(m) * hold_out // total for m in by_class]
    remainder = hold_out - sum(quotas)
    order = sorted(range(class_count), key=lambda c: (-(len(by_class[c]) * hold_out % total), c))
    for c in order[:remainder]:
        quotas[c] += 1
    generator = RandomGenerator(seed)
    kept, held = [], []
    for c in range(class_count):
        members = list(by_class[c])
        for i in range(len(members) - 1, 0, -1):
            j = generator.bounded(i + 1)
            members[i], members[j] = members[j], members[i]
        held += members[:quotas[c]]
        kept += members[quotas[c]:]
    return sorted(kept), sorted(held)


def digits_test(repo_root):
    path = os.path.join(repo_root, "Sources/QuadraData/Resources/digits.csv.gz")
    rows = [list(map(int, line.split(","))) for line in gzip.open(path, "rt").read().split("\n") if line.strip()]
    pixels = np.array([r[:64] for r in rows], dtype=np.float32).reshape(-1, 8, 8)
    labels = [r[64] for r in rows]
    _, held = stratified_split(labels, 10, 360, 0)
    return pixels[held], np.array([labels[i] for i in held])


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def idx_test(directory):
    def find(kind, rank):
        for base in (f"t10k-{kind}-idx{rank}-ubyte", f"t10k-{kind}.idx{rank}-ubyte"):
            for name in (base, base + ".gz"):
                if os.path.exists(os.path.join(directory, name)):
                    return os.path.join(directory, name)
        raise FileNotFoundError(f"no t10k {kind} file in {directory}")
    return read_idx(find("images", 3)).astype(np.float32), read_idx(find("labels", 1)).astype(np.int64)


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="model.safetensors (or a run directory)")
    parser.add_argument("--dataset", help="digits, fashion-mnist or an IDX directory (default: from the checkpoint)")
    parser.add_argument("--expect", type=float, help="fail unless the accuracy equals this (±0.0005)")
    parser.add_argument("--repo-root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    args = parser.parse_args()

    path = args.checkpoint
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    if "config" not in metadata:
        sys.exit(f"{path}: no 'config' in the metadata")
    config = json.loads(metadata["config"])
    norm = json.loads(metadata["normalization"])

    model = VisionModel(config)
    model.load_state_dict(load_file(path), strict=True)
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"{config['name']}: load_state_dict(strict=True) OK, {params} parameters")

    dataset = args.dataset or metadata.get("dataset", "digits")
    if dataset == "digits":
        images, labels = digits_test(args.repo_root)
    else:
        images, labels = idx_test("/usr/share/datasets/fashion-mnist" if dataset == "fashion-mnist" else dataset)
    x = torch.from_numpy((images / norm["maxValue"] - norm["mean"]) / norm["std"]).float().unsqueeze(1)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 500):
            logits = model(x[start:start + 500])
            correct += (logits.argmax(1).numpy() == labels[start:start + 500]).sum()
    accuracy = correct / len(x)
    print(f"{config['name']} on {dataset}: test accuracy {100 * accuracy:.2f}% ({correct}/{len(x)}) in PyTorch")
    if args.expect is not None and abs(accuracy - args.expect) > 5e-4:
        sys.exit(f"accuracy {accuracy:.4f} differs from the expected {args.expect:.4f}")


if __name__ == "__main__":
    main()
