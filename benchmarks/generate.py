"""Generation speed of the published two-path model on CPU, in one run.

The Img2Vid model of configs/cityscapes.py (two paths, 128x256, K = 4), with random weights
(the cost is what is measured), generates K = 4 frames from a first frame and a label map: one
eval-mode pass on a 1-frame video, with z and the refinement noise given, so the motion
encoder does not run (what `seg2vid_jax.generate.sample_videos` does per pass). Every batch
size (and `ops.conv` mode, `--modes`, and XLA:CPU library choice, `--options`, see
benchmarks/xla_cpu_options.py) is compiled first, then timed interleaved (batch 1,
batch 8, batch 1, ...) so that the load of a shared machine hits all alike. Prints the median
time of a batch-1 pass (target: under 1 s) and frames/s at batch 1 and batch 8, with XLA's
FLOP count, the achieved GFLOP/s and the time the pass would take at the fp32 matmul peak
measured in the same run.

  CUDA_VISIBLE_DEVICES= python benchmarks/generate.py [--batches=1,8] [--repeats=3] \
      [--modes=auto,direct] [--options=ours,ynn_products] [--profile]
  (--dtype=bfloat16 to time bfloat16 compute instead)
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

import jax
import jax.numpy as jnp
import numpy as np

from configs import cityscapes  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg2vid_jax.tasks import img2vid
from seg2vid_jax.models import init_variables
from seg2vid_jax.ops import conv
from train_step import matmul_peak  # pylint: disable=g-import-not-at-top
import xla_cpu_options  # pylint: disable=g-import-not-at-top,wrong-import-position
import xla_profile  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batches', default='1,8', help='batch sizes, timed interleaved')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--dtype', default='float32', help="compute dtype: 'bfloat16' to try it")
  parser.add_argument('--modes', default='auto',
                      help="convolution modes of ops.conv, timed interleaved: e.g. 'auto,direct'")
  parser.add_argument('--options', default='ours',
                      help='XLA:CPU library choices, comma-separated: '
                      + ', '.join(xla_cpu_options.NAMES))
  parser.add_argument('--profile', action='store_true',
                      help='one more pass of the first mode under jax.profiler, time summed by '
                      'kind of op (xla_profile.py)')
  args = parser.parse_args()
  batches = [int(b) for b in args.batches.split(',')]
  variants = xla_cpu_options.variants(args.modes.split(','), args.options.split(','))
  modes = [label for label, _, _ in variants]

  config = cityscapes.get_config()
  config.model.dtype = args.dtype
  model = img2vid.create_model(config)
  k = model.num_predicted_frames
  h, w = model.image_size
  t = time.perf_counter()
  variables = init_variables(model, jax.random.key(0))
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} ({jax.device_count()} device); '
        f'configs/cityscapes.py: two_path={model.two_path}, {h}x{w}, K={k}, '
        f'dtype={args.dtype}, '
        f'{sum(x.size for x in jax.tree.leaves(variables["params"])) / 1e6:.1f}M parameters '
        f'(init {time.perf_counter() - t:.0f} s)')

  def generate(variables, frame, label_onehot, noise, z):
    out = model.apply(variables, frame, label_onehot, noise, z)  # Eval mode, T = 1.
    return {name: out[name] for name in ('refined', 'warped', 'flow', 'mask_fw', 'mask_bw')}

  rng = np.random.default_rng(0)
  runs = [(mode, b) for mode in modes for b in batches]
  compiled, inputs, flops = {}, {}, {}
  for b in batches:
    frame = jnp.asarray(rng.uniform(0, 1, (b, 1, h, w, model.channels)), jnp.float32)
    labels = jax.nn.one_hot(rng.integers(0, model.num_classes, (b, h, w)), model.num_classes)
    noise = jnp.asarray(rng.standard_normal((b, h, w, model.channels)), jnp.float32)
    z = jnp.asarray(rng.standard_normal((b,) + model.latent_shape), jnp.float32)
    inputs[b] = (variables, frame, labels, noise, z)
  settings = {mode: (conv_mode, option) for mode, conv_mode, option in variants}
  for run in runs:
    mode, b = run
    conv_mode, option = settings[mode]
    t = time.perf_counter()
    with conv.using_mode(conv_mode):  # jit per run: each library choice is its own program.
      compiled[run] = jax.jit(generate, compiler_options=xla_cpu_options.by_name(option)).lower(
          *inputs[b]).compile()
    cost = compiled[run].cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops[run] = float(cost['flops'])
    out = jax.block_until_ready(compiled[run](*inputs[b]))  # Warm-up.
    assert out['refined'].shape == (b, k, h, w, model.channels), out['refined'].shape
    assert all(bool(jnp.isfinite(x).all()) for x in out.values())
    print(f'mode {mode}, batch {b}: compiled in {time.perf_counter() - t:.0f} s, '
          f'{flops[run] / 1e9:.1f} GFLOP per pass (XLA cost analysis)')

  times = {run: [] for run in runs}
  for _ in range(args.repeats):  # Interleaved: every mode and batch, then again.
    for run in runs:
      t = time.perf_counter()
      jax.block_until_ready(compiled[run](*inputs[run[1]]))
      times[run].append(time.perf_counter() - t)
  med = {run: float(np.median(times[run])) for run in runs}
  for (mode, b) in runs:
    m = med[mode, b]
    print(f'mode {mode}, batch {b}: {k} frames x {b}: median {m:.3f} s '
          f'(min {min(times[mode, b]):.3f}, {args.repeats} runs), {b * k / m:.1f} frames/s, '
          f'{flops[mode, b] / m / 1e9:.0f} GFLOP/s')
  peak = matmul_peak()
  print(f'fp32 matmul peak measured now: {peak:.0f} GFLOP/s')
  for mode in modes:
    if 1 in batches:
      m, f = med[mode, 1], flops[mode, 1]
      print(f'mode {mode}: batch 1 median {m:.3f} s: {"under" if m < 1 else "OVER"} the 1 s '
            f'target; {f / 1e9:.0f} GFLOP at the matmul peak would take {f / peak / 1e9:.2f} s '
            f'(the pass runs at {f / m / peak / 1e9:.0%} of peak)')
    for b in batches[1:]:
      print(f'mode {mode}: frames/s batch {b} / batch {batches[0]}: '
            f'{b * med[mode, batches[0]] / batches[0] / med[mode, b]:.2f}x')
  for mode in modes[1:]:
    for b in batches:
      print(f'batch {b}: mode {modes[0]} is {med[mode, b] / med[modes[0], b]:.2f}x as fast as '
            f'mode {mode}')
  if args.profile:
    first = runs[0]
    xla_profile.print_breakdown(*xla_profile.profile(compiled[first], *inputs[first[1]]))


if __name__ == '__main__':
  main()
