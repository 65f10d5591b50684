"""Train-step speed of the published seg2vid configuration on this machine, in one run.

Prints the step time of the published two-path model (batch 2, 128x256, K = 4, fp32, VGG
perceptual term on with random weights: the same arithmetic as ImageNet ones), its FLOPs from
XLA's cost analysis, the achieved GFLOP/s, this machine's fp32 matmul peak measured the same
run, their ratio against the 75% target, XLA's scratch memory and the peak resident memory.
For scale (MODEL.md): the PyTorch original takes 15.4 s for this step on a 2-core CPU, 1.9
TFLOP, 124 GFLOP/s (~67% of 185 GFLOP/s).

  PYTHONPATH=. python benchmarks/train_step.py [--batch=2] [--steps=3] [--height=128 --width=256]
      [--frames=5] [--remat] [--modes=auto,direct,xla] [--options=ours,ynn_products]
      [--profile] [--json=out.json]

--modes times the step with each convolution mode of `ops.conv` (`auto`: Winograd for wide
3x3 layers, per-tap weight gradients, Eigen convolutions; `direct`: the same without Winograd;
`xla`: XLA's defaults), the modes' steps alternating, and prints each against the first;
--options does the same for XLA:CPU's library choices (`xla_cpu_options.py`: `ours`, Eigen's
convolutions and products; `ynn_products`, the choice before 2026-12-04; `defaults`), each
with each mode; --profile adds a breakdown of one step's time by kind of XLA op
(`xla_profile.py`) for the first mode.
"""

import argparse
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import cityscapes
from seg2vid_jax import vgg_weights
from seg2vid_jax.losses import img2vid as losses
from seg2vid_jax.tasks import img2vid
from seg2vid_jax.ops import conv
import xla_cpu_options
import xla_profile


def matmul_peak(n=4096, repeats=5):
  """GFLOP/s of an n x n fp32 matrix product under jit: the practical peak."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t)
  return 2 * n ** 3 / best / 1e9


def random_vgg_params():
  """VGG19 parameters of the right shapes (random: the cost is what is measured)."""
  shapes = vgg_weights.param_shapes()
  keys = iter(jax.random.split(jax.random.key(1), 64))
  return jax.tree.map(lambda s: 0.01 * jax.random.normal(next(keys), s.shape), shapes)


def step_flops(state, batch, vgg):
  """XLA's FLOP count of the training step, computed with XLA's own convolution gradients.

  Cost analysis counts the body of a loop once, so the per-tap weight gradients (a loop over
  the kernel taps) would be undercounted; the arithmetic is the same either way.
  """
  with conv.using_mode('xla'):  # A function of its own: traced afresh in this mode.
    step = jax.jit(lambda s, b, v: img2vid.train_step(s, b, v, seed=0, weights=losses.WEIGHTS))
    cost = step.lower(state, batch, vgg).cost_analysis()
  return float((cost[0] if isinstance(cost, (list, tuple)) else cost)['flops'])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=2)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--height', type=int, default=128)
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--frames', type=int, default=5)
  parser.add_argument('--remat', action='store_true', help='rematerialise the refinement net')
  parser.add_argument('--no_vgg', action='store_true', help='perceptual term off')
  parser.add_argument('--modes', default='auto',
                      help='comma-separated convolution modes of ops.conv to time, alternately')
  parser.add_argument('--options', default='ours',
                      help='XLA:CPU library choices, comma-separated: '
                      + ', '.join(xla_cpu_options.NAMES))
  parser.add_argument('--profile', action='store_true',
                      help='one more step under jax.profiler, time summed by kind of op')
  parser.add_argument('--json', help='also write the figures to this JSON file')
  args = parser.parse_args()

  config = cityscapes.get_config()
  config.batch_size = args.batch
  config.image_size = (args.height, args.width)
  config.num_frames = args.frames
  config.model.remat_refine = args.remat
  model = img2vid.create_model(config)
  state = img2vid.create_train_state(config, model, jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = {'video': jnp.asarray(rng.uniform(0, 1, (args.batch, args.frames, args.height,
                                                    args.width, 3)), jnp.float32),
           'label_onehot': jax.nn.one_hot(rng.integers(0, 20, (args.batch, args.height,
                                                                args.width)), 20)}
  vgg = None if args.no_vgg else random_vgg_params()
  flops = step_flops(state, batch, vgg)
  runs = xla_cpu_options.variants(args.modes.split(','), args.options.split(','))
  modes = [label for label, _, _ in runs]
  compiled, memory, compile_s = {}, {}, {}
  for mode, conv_mode, option in runs:  # Each traced afresh: the mode is read while tracing.
    with conv.using_mode(conv_mode):
      step = jax.jit(lambda s, b, v: img2vid.train_step(s, b, v, seed=0, weights=losses.WEIGHTS),
                     donate_argnums=0, compiler_options=xla_cpu_options.by_name(option))
      t = time.perf_counter()
      compiled[mode] = step.lower(state, batch, vgg).compile()
      compile_s[mode] = time.perf_counter() - t
    memory[mode] = compiled[mode].memory_analysis().temp_size_in_bytes / 2 ** 30
    state, terms = compiled[mode](state, batch, vgg)  # Warm-up.
    jax.block_until_ready(terms)
  peak_before = matmul_peak()  # Before and after the steps: the machine's load drifts.
  times = {mode: [] for mode in modes}
  for _ in range(args.steps):
    for mode in modes:
      t = time.perf_counter()
      state, terms = compiled[mode](state, batch, vgg)
      jax.block_until_ready(terms)
      times[mode].append(time.perf_counter() - t)
  peak_after = matmul_peak()
  peak = (peak_before + peak_after) / 2
  rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
  print(f'published two-path model, batch {args.batch}, {args.height}x{args.width}, '
        f'K={args.frames - 1}, fp32, VGG {"off" if args.no_vgg else "on"}, '
        f'remat {"on" if args.remat else "off"}, {jax.device_count()} '
        f'{jax.devices()[0].platform} device(s); median of {args.steps} steps per mode')
  print(f'XLA FLOPs per step        {flops / 1e9:8.0f} GFLOP of direct convolutions (PyTorch '
        'count: 1,903)')
  print(f'fp32 matmul peak          {peak:8.1f} GFLOP/s (before {peak_before:.1f}, after '
        f'{peak_after:.1f})')
  first = float(np.median(times[modes[0]]))
  results = {}
  for mode in modes:
    step_s = float(np.median(times[mode]))
    achieved = flops / step_s / 1e9  # Direct-convolution FLOPs: Winograd counts as faster.
    results[mode] = dict(step_s=step_s, times=times[mode], gflops=achieved,
                         compile_s=compile_s[mode], temp_gb=memory[mode])
    print(f'[{mode:6}] step {step_s:6.2f} s ({step_s / first:5.3f}x {modes[0]}), '
          f'{achieved:6.1f} GFLOP/s equivalent = {achieved / peak:6.1%} of peak, compile '
          f'{compile_s[mode]:5.1f} s, XLA temporaries {memory[mode]:5.2f} GB')
  print(f'peak resident memory      {rss_gb:8.2f} GB')
  print(f'target (issue 14): 12.6 s, 1.15x faster than the PyTorch original (14.2-14.8 s on '
        f'this machine, not timed in this run): {modes[0]} at {first:.2f} s is '
        f'{"met" if first <= 12.6 else "not met"}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(vars(args), flops_gflop=flops / 1e9, peak_gflops=peak, rss_gb=rss_gb,
                     modes=results), f, indent=1)
  if args.profile:
    xla_profile.print_breakdown(*xla_profile.profile(compiled[modes[0]], state, batch, vgg))


if __name__ == '__main__':
  main()
