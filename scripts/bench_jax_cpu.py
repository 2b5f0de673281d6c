#!/usr/bin/env python3
"""The paper's own framework as the CPU reference: the same training step as `ffvol bench` in JAX.

Gaussian Fourier features (m frequencies, σ = 10), a depth × width ReLU MLP with one logit,
sigmoid cross-entropy, Adam with bias correction; one jitted step, median over the timed steps.
Prints one line: `jax-cpu depth width m batch samples_per_second`.

    pip install "jax[cpu]"
    python3 scripts/bench_jax_cpu.py --depth 4 --width 128 --features 128 --batch 8192
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--features", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()

    key = jax.random.PRNGKey(0)
    kb, kx, kw = jax.random.split(key, 3)
    B = 10.0 * jax.random.normal(kb, (a.features, 3))
    sizes = [2 * a.features] + [a.width] * (a.depth - 1) + [1]
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lim = (6.0 / (n_in + n_out)) ** 0.5
        w = jax.random.uniform(jax.random.fold_in(kw, i), (n_in, n_out), minval=-lim, maxval=lim)
        params.append((w, jnp.zeros((n_out,))))
    x = jax.random.uniform(kx, (a.batch, 3))
    y = (x[:, 0] > 0.5).astype(jnp.float32)

    def loss_fn(params, x, y):
        t = 2 * jnp.pi * x @ B.T
        h = jnp.concatenate([jnp.cos(t), jnp.sin(t)], axis=-1)
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        w, b = params[-1]
        z = (h @ w + b)[:, 0]
        return jnp.mean(jnp.maximum(z, 0) - z * y + jnp.log1p(jnp.exp(-jnp.abs(z))))

    @jax.jit
    def step(params, m, v, t, x, y):
        loss, g = jax.value_and_grad(loss_fn)(params, x, y)
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        params = jax.tree_util.tree_map(
            lambda p, m, v: p - 1e-4 * (m / c1) / (jnp.sqrt(v / c2) + 1e-8), params, m, v
        )
        return params, m, v, loss

    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    params, m, v, loss = step(params, m, v, 1.0, x, y)
    loss.block_until_ready()
    times = []
    for t in range(2, a.steps + 2):
        t0 = time.perf_counter()
        params, m, v, loss = step(params, m, v, float(t), x, y)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    rate = a.batch / statistics.median(times)
    print(f"jax-cpu {a.depth} {a.width} {a.features} {a.batch} {rate:.0f}  (jax {jax.__version__}, {jax.devices()[0].platform})")


if __name__ == "__main__":
    main()
