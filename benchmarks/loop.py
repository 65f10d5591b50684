"""Steps/s of the whole training loop (data included) against the bare jitted step, one run.

The loop is `train.train_and_evaluate` itself on a config (the CPU demo by default) with
evaluation and sample sheets off; its rate is what it writes to TensorBoard
(`train/steps_per_sec`) for every `--log_every` steps after the first interval (which holds
the compilation). The bare step is the same jitted step (`train.make_train_step`) called on
one batch already on the devices, timed before and after the loop; the overhead is the loop's
time per step over the mean of the two. Prints the backend and its device kind.

  PYTHONPATH=. python benchmarks/loop.py [--config=configs/synthetic.py] [--log_every=20]
      [--intervals=3] [--json=out.json]
"""

import argparse
import glob
import importlib
import json
import os
import tempfile
import time

import jax
import tensorflow as tf

from seg2vid_jax import input_pipeline
from seg2vid_jax import tasks
from seg2vid_jax import train
from seg2vid_jax.tasks import base


def load_config(path):
  return importlib.import_module(path.replace('/', '.').removesuffix('.py')).get_config()


def bare_step_seconds(config, steps):
  """Seconds per call of the jitted train step on one batch already on the devices."""
  task = tasks.get_task(config)
  mesh = base.create_mesh()
  model = task.create_model(config)
  state = jax.device_put(task.create_state(config, model, jax.random.key(0)),
                         base.replicated_sharding(mesh))
  batch = next(input_pipeline.create_train_iterator(
      config, 0, input_pipeline.data_sharding(mesh.devices.ravel())))
  step = train.make_train_step(config, mesh, state)
  vgg = jax.device_put(train.load_vgg(config), base.replicated_sharding(mesh))
  state, terms = step(state, batch, vgg)  # Compile.
  jax.block_until_ready(terms)
  start = time.perf_counter()
  for _ in range(steps):
    state, terms = step(state, batch, vgg)
  jax.block_until_ready((state, terms))
  return (time.perf_counter() - start) / steps


def loop_steps_per_sec(config, workdir):
  """The loop's own steps/s per logging interval, the first (compilation) left out."""
  train.train_and_evaluate(config, workdir)
  rates = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'train/steps_per_sec':
          rates[event.step] = float(tf.make_ndarray(value.tensor))
  return [rates[s] for s in sorted(rates)][1:]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='configs/synthetic.py')
  parser.add_argument('--log_every', type=int, default=20)
  parser.add_argument('--intervals', type=int, default=3)
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  config = load_config(args.config)
  config.log_every_steps = args.log_every
  config.num_train_steps = args.log_every * args.intervals
  config.checkpoint_every_steps = config.num_train_steps
  config.sample_every_steps = 0
  config.num_eval_clips = 0
  config.progress_bar = False
  device = jax.devices()[0]
  print(f'backend {jax.default_backend()}, {jax.device_count()} x {device.device_kind}; '
        f'{args.config}, global batch {config.batch_size}')
  before = bare_step_seconds(config, args.log_every)
  with tempfile.TemporaryDirectory() as workdir:
    rates = loop_steps_per_sec(config, workdir)
  after = bare_step_seconds(config, args.log_every)
  bare = (before + after) / 2
  loop = 1.0 / (sum(rates) / len(rates))
  result = dict(device_kind=device.device_kind, backend=jax.default_backend(),
                bare_step_s_before=before, bare_step_s_after=after,
                loop_steps_per_sec=rates, loop_step_s=loop, overhead=loop / bare - 1)
  print(f'bare step: {before:.4f} s before, {after:.4f} s after the loop '
        f'({1 / bare:.2f} steps/s)')
  print('loop: ' + ', '.join(f'{r:.3f}' for r in rates) + f' steps/s per interval of '
        f'{args.log_every} -> {loop:.4f} s per step')
  print(f'loop overhead over the bare step: {100 * (loop / bare - 1):+.1f}% (target < 3%)')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
