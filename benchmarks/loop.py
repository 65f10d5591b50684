"""Steps/s of the whole training loop (data included) against the bare jitted step, one run.

The loop is `train.train_and_evaluate` itself on a config (the CPU demo by default) with
evaluation and sample sheets off; its rate is what it writes to TensorBoard
(`train/steps_per_sec`) for every `--log_every` steps after the first interval (which holds
the compilation). The bare step is the same jitted step (`train.make_train_step`) called on
one batch already on the devices. The machine drifts by more than the 3% the loop may cost, so
the two alternate: `--rounds` times, the bare step is timed and then the loop trains on (it
resumes from its checkpoint, and each round's first interval, which holds the compilation or
the restore, is left out); a last bare timing closes. Each round's overhead is its loop time
per step over the mean of the bare timings on either side; the median over rounds is the
result. The input pipeline alone is timed last, for the share of the loop's time that its work
takes where it shares the step's cores (a CPU). Prints the backend and its device kind.

`--data=pipeline,cached` also runs, in every round, the loop on a few batches made before it
starts and read in a cycle (no tf.data work during the loop): the difference between the two
is what the input pipeline costs the loop, the rest is the loop's own.

  PYTHONPATH=. python benchmarks/loop.py [--config=configs/synthetic.py] [--log_every=20]
      [--intervals=3] [--rounds=3] [--data=pipeline[,cached]] [--json=out.json]
"""

import argparse
import contextlib
import glob
import itertools
import json
import os
import tempfile
import time

import jax
import numpy as np
import tensorflow as tf

from seg2vid_jax import generate
from seg2vid_jax import input_pipeline
from seg2vid_jax import tasks
from seg2vid_jax import train
from seg2vid_jax.tasks import base


def train_batches(config, mesh):
  """The training input pipeline on the mesh, as the loop reads it."""
  return input_pipeline.create_train_iterator(
      config, 0, input_pipeline.data_sharding(mesh.devices.ravel()))


def make_bare_step(config):
  """A function timing `steps` calls of the jitted train step on one batch on the devices."""
  task = tasks.get_task(config)
  mesh = base.create_mesh()
  model = task.create_model(config)
  state = jax.device_put(task.create_state(config, model, jax.random.key(0)),
                         base.replicated_sharding(mesh))
  batch = next(train_batches(config, mesh))
  step = train.make_train_step(config, mesh, state)
  vgg = jax.device_put(train.load_vgg(config), base.replicated_sharding(mesh))
  state, terms = step(state, batch, vgg)  # Compile.
  jax.block_until_ready(terms)

  def seconds_per_step(steps):
    nonlocal state
    start = time.perf_counter()
    for _ in range(steps):
      state, terms = step(state, batch, vgg)
    jax.block_until_ready((state, terms))
    return (time.perf_counter() - start) / steps
  return seconds_per_step


def data_seconds_per_batch(config, batches):
  """Seconds per global batch of the input pipeline alone (to the jax.Array on the devices),
  after a warm-up: on a CPU its work shares the cores with the step."""
  iterator = train_batches(config, base.create_mesh())
  for _ in range(5):
    jax.block_until_ready(next(iterator))
  start = time.perf_counter()
  for _ in range(batches):
    jax.block_until_ready(next(iterator))
  return (time.perf_counter() - start) / batches


@contextlib.contextmanager
def cached_batches(config, count=8):
  """Inside the block the loop reads `count` batches made beforehand, in a cycle, instead of
  the input pipeline (whose work then no longer runs during the loop)."""
  mesh = base.create_mesh()
  iterator = train_batches(config, mesh)
  batches = jax.block_until_ready([next(iterator) for _ in range(count)])
  del iterator  # Its tf.data threads end with it.
  original = input_pipeline.create_train_iterator
  input_pipeline.create_train_iterator = lambda *args, **kwargs: itertools.cycle(batches)
  try:
    yield
  finally:
    input_pipeline.create_train_iterator = original


def loop_steps_per_sec(config, workdir, first_step):
  """The loop's own steps/s per logging interval from `first_step` on (it resumes from the
  workdir's checkpoint), its first interval (compilation or restore) left out."""
  train.train_and_evaluate(config, workdir)
  rates = {}
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'train/steps_per_sec' and event.step > first_step:
          rates[event.step] = float(tf.make_ndarray(value.tensor))
  return [rates[s] for s in sorted(rates)][1:]


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--config', default='configs/synthetic.py')
  parser.add_argument('--log_every', type=int, default=20)
  parser.add_argument('--intervals', type=int, default=3)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--data', default='pipeline',
                      help="'pipeline' (the config's input pipeline), 'cached' or both")
  parser.add_argument('--json', default='')
  args = parser.parse_args()
  kinds = args.data.split(',')
  if not kinds or set(kinds) - {'pipeline', 'cached'}:
    parser.error(f"--data={args.data!r}: use 'pipeline', 'cached' or 'pipeline,cached'")
  config = generate.load_config_file(args.config)
  config.log_every_steps = args.log_every
  segment = args.log_every * args.intervals
  config.checkpoint_every_steps = segment
  config.sample_every_steps = 0
  config.num_eval_clips = 0
  config.progress_bar = False
  device = jax.devices()[0]
  print(f'backend {jax.default_backend()}, {jax.device_count()} x {device.device_kind}; '
        f'{args.config}, global batch {config.batch_size}')
  bare_step = make_bare_step(config)
  bare = [bare_step(args.log_every)]
  loops = {kind: [] for kind in kinds}
  overheads = {kind: [] for kind in kinds}
  with contextlib.ExitStack() as stack:
    workdirs = {kind: stack.enter_context(tempfile.TemporaryDirectory()) for kind in kinds}
    for r in range(args.rounds):
      config.num_train_steps = segment * (r + 1)
      for kind in kinds:
        with cached_batches(config) if kind == 'cached' else contextlib.nullcontext():
          rates = loop_steps_per_sec(config, workdirs[kind], segment * r)
        loops[kind].append(len(rates) / sum(rates))
        bare.append(bare_step(args.log_every))
        overheads[kind].append(loops[kind][-1] / ((bare[-2] + bare[-1]) / 2) - 1)
        print(f'round {r + 1}, {kind} data: bare {bare[-2]:.4f} s, loop ' + ', '.join(
            f'{x:.3f}' for x in rates) + f' steps/s = {loops[kind][-1]:.4f} s per step, bare '
              f'{bare[-1]:.4f} s: overhead {100 * overheads[kind][-1]:+.1f}%')
  medians = {kind: float(np.median(overheads[kind])) for kind in kinds}
  data = data_seconds_per_batch(config, 4 * args.log_every)
  result = dict(device_kind=device.device_kind, backend=jax.default_backend(),
                bare_step_s=bare, loop_step_s=loops, overheads=overheads,
                overhead=medians, data_s_per_batch=data)
  for kind in kinds:
    print(f'loop overhead over the bare step, {kind} data, median of {args.rounds} rounds: '
          f'{100 * medians[kind]:+.1f}% (target < 3%)')
  print(f'the bare step drifted {100 * (max(bare) / min(bare) - 1):.0f}% over the run')
  print(f'the input pipeline alone: {data:.4f} s per batch, {100 * data / np.mean(bare):.1f}% '
        'of the mean bare step (on a CPU it runs on the cores the step uses)')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
