"""The training loop that every task shares: `train_and_evaluate(config, workdir)`.

What to train comes from the task of the config (`seg2vid_jax.tasks`: stage 2 img2vid, stage 1
img2img); this module does the rest: the mesh, the jitted step, input batches prefetched onto
the devices, checkpoints (`seg2vid_jax.checkpoints`), summaries, progress, preemption and the
periodic evaluation.

Data parallel over every device of every host: `jax.jit` over a 1-D `data` mesh, parameters
replicated and batches sharded (what `pmap` became). BatchNorm statistics are over the global
batch, so N devices compute exactly what one device computes on the same batch. The data order
is a function of the step and each task's random numbers are `fold_in(seed, step)`, so a run
resumed from a checkpoint repeats the losses of an uninterrupted one.

The loop does not wait for the devices at every step: the loss terms stay on the devices and
are fetched every `log_every_steps`, and before every checkpoint, sample sheet and evaluation,
where the non-finite check runs on every step fetched. So no checkpoint holds a state past a
non-finite loss.
"""

import collections
import os
import signal
import threading
import time
from typing import Dict, Iterator

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from seg2vid_jax import checkpoints
from seg2vid_jax import input_pipeline
from seg2vid_jax import vgg_weights
from seg2vid_jax.ops import conv
from seg2vid_jax.tasks import base
from seg2vid_jax.tasks import get_task

# Kept here for the scripts and notebooks that use them from the loop module.
restore_state = checkpoints.restore_state
PREFETCH_STEPS = 2  # Batches put on the devices ahead of the step that uses them.


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def load_vgg(config):
  """The frozen VGG19 parameters for the perceptual terms, or None (the terms are then off)."""
  if not config.vgg_weights:
    logging.warning('config.vgg_weights is not set: the perceptual (VGG) loss term is off. '
                    'Convert VGG19 weights with `python -m seg2vid_jax.vgg_weights`.')
    return None
  return vgg_weights.load(config.vgg_weights)


def make_train_step(config, mesh, state):
  """The task's train step jitted over the mesh: state replicated and donated, batch sharded."""
  replicated = base.replicated_sharding(mesh)
  return jax.jit(
      get_task(config).step_fn(config),
      in_shardings=(jax.tree.map(lambda _: replicated, state),
                    input_pipeline.data_sharding(mesh.devices.ravel()), replicated),
      out_shardings=(jax.tree.map(lambda _: replicated, state), replicated),
      donate_argnums=0, compiler_options=conv.compiler_options())


def check_finite(step: int, terms: Dict[str, float]):
  """Raises `NonFiniteLossError` naming the step and every non-finite term."""
  bad = [name for name, value in terms.items() if not np.isfinite(value)]
  if bad:
    raise NonFiniteLossError(
        f'non-finite loss at step {step}: {", ".join(f"{n}={terms[n]}" for n in bad)}; '
        'training stopped, the last good checkpoint is kept')


class LossLog:
  """The loss terms of the steps since the last summary, kept on the devices until `fetch`."""

  def __init__(self):
    self._pending = []  # (step, terms as device arrays), not fetched yet.
    self._sums, self._count, self._tic = {}, 0, time.time()
    self.last = {}  # The terms of the last fetched step.

  def add(self, step: int, terms):
    self._pending.append((step, terms))

  def fetch(self):
    """Copies the pending terms to the host (one transfer) and checks each step's."""
    for step, terms in jax.device_get(self._pending):
      check_finite(step, terms)
      for k, v in terms.items():
        self._sums[k] = self._sums.get(k, 0.0) + float(v)
      self._count += 1
      self.last = terms
    self._pending = []

  def write(self, step: int, writer):
    """Means over the steps since the last summary, as train/<term>, and steps per second."""
    self.fetch()
    scalars = {f'train/{k}': v / self._count for k, v in self._sums.items()}
    scalars['train/steps_per_sec'] = self._count / (time.time() - self._tic)
    writer.write_scalars(step, scalars)
    self._sums, self._count, self._tic = {}, 0, time.time()


def prefetch(iterator: Iterator, size: int = PREFETCH_STEPS) -> Iterator:
  """Yields the batches of `iterator` while the next `size` are already on the devices."""
  queue = collections.deque()
  for batch in iterator:
    queue.append(batch)
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


class PreemptionWatcher:
  """Turns SIGTERM (preemption) into a stop at a step boundary that all processes agree on.

  One process: a SIGTERM handler sets a flag. Several processes: JAX's preemption service
  (started by `jax.distributed.initialize`) catches a SIGTERM to any of them and the
  coordination service picks the first step that every process can still reach
  (`multihost_utils.reached_preemption_sync_point`), so no step waits on a collective.
  """

  def __init__(self):
    self._flag = threading.Event()
    self._multiprocess = jax.process_count() > 1
    # Several processes: a Python handler would replace the preemption service's own.
    if not self._multiprocess and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint at the end of this step.')
    self._flag.set()

  def should_stop(self, step: int) -> bool:
    """Whether to checkpoint and stop after `step` (called once at the end of every step)."""
    if self._multiprocess:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._flag.is_set()


def evaluate_checkpoint(config, workdir: str):
  """--mode=eval: evaluates the latest checkpoint of `workdir`."""
  model, mesh, state = restore_state(config, workdir)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  results = get_task(config).evaluate(config, model, state, mesh, int(state.step),
                                      base.resolve_workdir(workdir), writer)
  writer.flush()
  return results


def _progress_bar(config, start: int):
  """A tqdm bar on interactive consoles of process 0, else None."""
  if not (config.progress_bar and jax.process_index() == 0 and os.isatty(2)):
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=config.num_train_steps, initial=start, unit='step', dynamic_ncols=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains the config's task in `workdir` (resuming from its checkpoints) and evaluates.

  Returns the final train state. Raises `NonFiniteLossError` if a loss becomes NaN/inf,
  `checkpoints.CheckpointWriteError` if the workdir cannot be written and
  `checkpoints.ConfigMismatchError` if its checkpoint is another task's or model's.
  """
  workdir = base.resolve_workdir(workdir)
  checkpoints.check_writable(workdir)
  task = get_task(config)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  mesh = base.create_mesh()
  model = task.create_model(config)
  replicated = base.replicated_sharding(mesh)
  state = jax.device_put(task.create_state(config, model, jax.random.key(config.seed)),
                         replicated)
  manager = checkpoints.manager(workdir, config)
  state = checkpoints.restore_latest(manager, state, config)
  start = int(state.step)
  vgg_params = jax.device_put(load_vgg(config), replicated)
  train_step = make_train_step(config, mesh, state)
  logging.info('Task %s with %s parameters on %d devices (%d processes), global batch %d.',
               task.describe(config), f'{sum(x.size for x in jax.tree.leaves(state.params)):,}',
               jax.device_count(), jax.process_count(), config.batch_size)
  if start == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items()
                          if isinstance(v, (int, float, str, bool))})
  if jax.process_index() == 0:  # The whole config (nested fields too), for each (re)start.
    base.write_workdir_file(workdir, 'config.json' if start == 0 else
                            f'config.resumed_at_{start}.json',
                            config.to_json_best_effort(indent=1, sort_keys=True).encode())

  batches = prefetch(input_pipeline.create_train_iterator(
      config, config.seed, input_pipeline.data_sharding(mesh.devices.ravel()), start_step=start))
  report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                           writer=writer, every_steps=config.log_every_steps)
  watcher = PreemptionWatcher()
  bar = _progress_bar(config, start)
  evaluating = config.get('num_eval_clips') != 0  # 0: no evaluation at all.
  log = LossLog()
  step, preempted = start, False
  for step in range(start + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = next(batches)
      state, terms = train_step(state, batch, vgg_params)
    log.add(step, terms)
    report(step)
    last = step == config.num_train_steps
    if step % config.log_every_steps == 0 or last:
      log.write(step, writer)
      if bar is not None:
        bar.set_postfix(loss=f'{log.last["total"]:.4f}')
    if bar is not None:
      bar.update(1)
    if config.sample_every_steps and step % config.sample_every_steps == 0:
      log.fetch()
      task.write_samples(config, model, state, batch, step, workdir, writer)
    preempted = watcher.should_stop(step)
    if step % config.checkpoint_every_steps == 0 or last or preempted:
      log.fetch()
      checkpoints.save(manager, state, step)
    if evaluating and config.eval_every_steps and step % config.eval_every_steps == 0:
      log.fetch()
      task.evaluate(config, model, state, mesh, step, workdir, writer)
    if preempted:
      logging.warning('Preempted: checkpoint saved at step %d, exiting.', step)
      break
  if bar is not None:
    bar.close()
  if evaluating and not preempted and (not config.eval_every_steps or
                                      step % config.eval_every_steps):
    task.evaluate(config, model, state, mesh, step, workdir, writer)
  writer.flush()
  manager.close()
  return state
