#!/usr/bin/env python3
"""Reference training throughput in PyTorch for the network `ffvol bench` trains.

Gaussian Fourier features (m frequencies, sigma = 10, features [cos 2piBv, sin 2piBv]), a
depth x width ReLU MLP with one logit, BCEWithLogits against a ball's occupancy, Adam. One
training step = encode + forward + loss + backward + Adam, on a fixed batch that lives on the
GPU. Prints one line per precision:

    torch <precision> <depth>x<width> m=<m> batch=<n> samples/s=<median> ms/step=<median>

Median over --steps timed steps after --warmup untimed ones. Precisions: fp32 (TF32 off),
tf32, bf16 (autocast). Run: python3 bench_torch.py --depth 4 --width 256 --features 256 --batch 262144
"""
import argparse
import math
import statistics
import sys
import time


def build(torch, depth, width, features, device):
    layers = []
    n_in = 2 * features
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(n_in, width), torch.nn.ReLU()]
        n_in = width
    layers.append(torch.nn.Linear(n_in, 1))
    return torch.nn.Sequential(*layers).to(device)


def bench(torch, args, precision):
    dev = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    g = torch.Generator(device=dev).manual_seed(0)
    b = torch.randn(args.features, 3, device=dev, generator=g) * args.sigma
    x = torch.rand(args.batch, 3, device=dev, generator=g)
    y = (((x - 0.5) ** 2).sum(dim=1, keepdim=True) < 0.09).float()
    model = build(torch, args.depth, args.width, args.features, dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        t = 2 * math.pi * (x @ b.T)
        feats = torch.cat([torch.cos(t), torch.sin(t)], dim=1)
        opt.zero_grad(set_to_none=True)
        if precision == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(feats)
            loss = loss_fn(logits.float(), y)
        else:
            loss = loss_fn(model(feats), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(
        f"torch {precision} {args.depth}x{args.width} m={args.features} batch={args.batch} "
        f"samples/s={args.batch / med:.0f} ms/step={med * 1e3:.3f}",
        flush=True,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--features", type=int, default=256)
    p.add_argument("--sigma", type=float, default=10.0)
    p.add_argument("--batch", type=int, default=1 << 18)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--precisions", default="fp32,tf32,bf16")
    args = p.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"torch: not available ({e})")
        return 1
    if not torch.cuda.is_available():
        print("torch: CUDA not available")
        return 1
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}", flush=True)
    for precision in args.precisions.split(","):
        bench(torch, args, precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
