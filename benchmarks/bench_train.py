"""Training throughput: audio samples per second through forward, backward and the optimizer step, as JSON.

    python benchmarks/bench_train.py [--steps 4] [--batch 4] [--crop 16000]

Config: the default ModelConfig (2 stacks x 10 layers, 64 residual / 128 gate / 64 skip channels, the source of the
controls at every layer, the control head), batch 4 x 16,000-sample crops (plus the receptive field's context,
which is computed but not counted), frames conditioning at 25 fps. Counted samples are the crop samples only. Measured for movenet in fp32 and in bf16 mixed precision (the default where the CPU has
bf16 instructions), and, as a same-run reference, a conventional WaveNet layout: a 256-channel one-hot input
through Conv1d, zero-padded channels-first dilated Conv1d layers and 1x1 convolutions, audio only, fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from movenet.model import ModelConfig, MoveNet
from movenet.train import default_precision


class ConventionalWaveNet(nn.Module):
    """The textbook layout (one-hot input, channels-first, zero-padded convolutions): the reference."""

    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.input_conv = nn.Conv1d(c.n_classes, c.residual_channels, 2)
        self.dilated = nn.ModuleList(nn.Conv1d(c.residual_channels, c.gate_channels, 2, dilation=d) for d in c.dilations)
        self.res = nn.ModuleList(nn.Conv1d(c.gate_channels // 2, c.residual_channels, 1) for _ in c.dilations)
        self.skip = nn.ModuleList(nn.Conv1d(c.gate_channels // 2, c.skip_channels, 1) for _ in c.dilations)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(c.skip_channels, c.skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(c.skip_channels, c.n_classes, 1))

    def loss(self, codes):
        x = F.one_hot(codes[:, :-1], self.c.n_classes).transpose(1, 2).float()
        x = self.input_conv(F.pad(x, (1, 0)))
        skips = 0
        for d, conv, res, skip in zip(self.c.dilations, self.dilated, self.res, self.skip):
            f, g = conv(F.pad(x, (d, 0))).chunk(2, dim=1)
            z = torch.tanh(f) * torch.sigmoid(g)
            x = x + res(z)
            skips = skips + skip(z)
        return F.cross_entropy(self.head(skips), codes[:, 1:])


def time_steps(step, n_steps: int) -> float:
    step()  # warm-up: allocations, oneDNN kernel selection
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return (time.perf_counter() - start) / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=16000, help="counted samples per crop (a multiple of hop)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # the wide frames model this benchmark has always measured (ModelConfig's defaults are the smaller CPU recipe)
    config = ModelConfig(residual_channels=64, gate_channels=128, skip_channels=64, features="frames", frame_width=32,
                         video_channels=64)
    counted = args.batch * args.crop
    results = {}

    model = MoveNet(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n_frames = config.context_frames + args.crop // config.hop
    batch = {  # as ClipDataset gives it: codes, frames, the source of the controls and the controls
        "codes": torch.randint(0, 256, (args.batch, 1 + n_frames * config.hop)),
        "frames": torch.randint(0, 256, (args.batch, n_frames, 64, 64, 1), dtype=torch.uint8),
        "excitation": torch.randn(args.batch, n_frames * config.hop, config.source_channels) * 0.3,
        "controls": torch.stack([torch.full((args.batch, n_frames), 440.0), torch.full((args.batch, n_frames), -20.0),
                                 torch.zeros(args.batch, n_frames)], dim=-1),
    }
    for precision in ("32-true", "bf16-mixed"):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                loss = sum(model.loss(batch).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds = time_steps(step, args.steps)
        results[f"movenet_{precision}"] = {"seconds_per_step": round(seconds, 3),
                                           "samples_per_second": round(counted / seconds)}

    reference = ConventionalWaveNet(config)
    ref_optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-3)
    ref_codes = torch.randint(0, 256, (args.batch, 1 + config.receptive_field - 1 + args.crop))

    def ref_step():
        loss = reference.loss(ref_codes)
        ref_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        ref_optimizer.step()
    seconds = time_steps(ref_step, args.steps)
    ref_rate = counted / seconds
    results["reference_conventional_fp32"] = {"seconds_per_step": round(seconds, 3),
                                              "samples_per_second": round(ref_rate)}
    for key in ("movenet_32-true", "movenet_bf16-mixed"):
        results[key]["ratio_to_reference"] = round(results[key]["samples_per_second"] / ref_rate, 2)

    print(json.dumps({
        "benchmark": "train_throughput",
        "config": {"layers": config.n_layers, "residual_channels": config.residual_channels,
                   "gate_channels": config.gate_channels, "skip_channels": config.skip_channels,
                   "batch": args.batch, "crop_samples": args.crop, "context_samples": config.context_frames * config.hop,
                   "features": config.features, "threads": torch.get_num_threads()},
        "default_precision_here": default_precision(),
        "results": results,
        "target_samples_per_second": 82000,
        "python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }, indent=2))


if __name__ == "__main__":
    main()
