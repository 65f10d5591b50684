"""Speed of seg2vid's 3x3 convolution layers on this CPU: direct (XLA) against Winograd.

For each layer shape (batch 8 = B·K frames of the published model at 128x256), times the
forward pass and the forward + both gradients of the convolution as the model runs it
(`ops.conv.conv_general_dilated` with its per-tap weight gradient, Eigen convolutions) and of
`ops.winograd.conv3x3` with 2x2 and 4x4 output tiles, and (fwd + bwd only) a hybrid: XLA's
forward pass and input gradient with the F(2x2) weight gradient (`weight_grad_winograd`, not
used by the model), one after the other in one run; prints milliseconds, the direct
convolution's GFLOP/s equivalent, and the speed-ups.

  PYTHONPATH=. python benchmarks/conv_layers.py [--repeats=5]
"""

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from seg2vid_jax.ops import conv, winograd

# (batch, height, width, C_in, C_out): the refinement U-Net's and VGG's 3x3 layers.
LAYERS = [(8, 128, 256, 16, 16), (8, 128, 256, 32, 32), (8, 128, 256, 64, 64),
          (8, 64, 128, 128, 128), (8, 32, 64, 256, 256), (8, 16, 32, 512, 512),
          (8, 8, 16, 512, 512)]


def direct(x, w):
  """The convolution as the model runs it without Winograd (mode 'direct')."""
  return conv.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def weight_grad_winograd(x, w):
  """The direct convolution whose weight gradient is F(2x2, 3x3)'s (the transpose of
  `winograd.conv3x3` in w) and whose input gradient is XLA's: does Winograd pay in the weight
  gradient alone, where the per-tap products are slowest?"""
  return direct(x, w)


def _wgw_fwd(x, w):
  return direct(x, w), (x, w)


def _wgw_bwd(residuals, g):
  x, w = residuals
  (dx,) = jax.vjp(lambda x: conv._plain_conv(x, w, (1, 1), ((1, 1), (1, 1))), x)[1](g)
  (dw,) = jax.linear_transpose(lambda w: winograd.conv3x3(x, w), w)(g)
  return dx, dw


weight_grad_winograd.defvjp(_wgw_fwd, _wgw_bwd)


def compiled_pair(fn):
  """jitted forward, and forward + gradients of <fn(x, w), g> w.r.t. x and w (g an argument,
  not a constant that XLA would fold)."""
  opts = conv.compiler_options()
  fwd = jax.jit(fn, compiler_options=opts)
  both = jax.jit(jax.grad(lambda x, w, g: jnp.vdot(fn(x, w), g), (0, 1)),
                 compiler_options=opts)
  return fwd, both


def best_ms(f, args, repeats):
  jax.block_until_ready(f(*args))
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    best = min(best, time.perf_counter() - t)
  return best * 1e3


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  conv.set_mode('direct')  # `direct` is the per-tap path; Winograd is called explicitly.
  rng = np.random.default_rng(0)
  print(f'{jax.devices()[0].platform}, {jax.device_count()} device(s); best of {args.repeats}')
  print('layer (N, H, W, Cin, Cout)   | fwd ms: direct / F2 / F4 (speed-up F2, F4) | '
        'fwd+bwd ms: direct / F2 / F4 (speed-up F2, F4) | fwd+bwd ms: F2 weight grad only '
        '(speed-up) | direct fwd+bwd GFLOP/s')
  for n, h, w, ci, co in LAYERS:
    x = jnp.asarray(rng.standard_normal((n, h, w, ci)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, ci, co)) / np.sqrt(9 * ci), jnp.float32)
    g = jnp.asarray(rng.standard_normal((n, h, w, co)), jnp.float32)
    fns = [direct] + [functools.partial(winograd.conv3x3, tile=t) for t in (2, 4)]
    fwd, both = zip(*[[best_ms(f, inputs, args.repeats) for f, inputs in
                       zip(compiled_pair(fn), ((x, k), (x, k, g)))] for fn in fns])
    row = lambda t: (f'{t[0]:7.1f} / {t[1]:7.1f} / {t[2]:7.1f} '
                     f'({t[0] / t[1]:4.2f}x, {t[0] / t[2]:4.2f}x)')
    hybrid = best_ms(compiled_pair(weight_grad_winograd)[1], (x, k, g), args.repeats)
    flops = 2 * n * h * w * ci * co * 9
    print(f'{str((n, h, w, ci, co)):28} | {row(fwd)} | {row(both)} | '
          f'{hybrid:7.1f} ({both[0] / hybrid:4.2f}x) | {3 * flops / both[0] / 1e6:6.1f}')


if __name__ == '__main__':
  main()
