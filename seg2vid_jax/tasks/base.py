"""What every task shares: the `Task` interface the training loop runs, the evaluation loop
over the held-out split, and writing to the workdir (local disk or a bucket)."""

import dataclasses
import json
import os
from typing import Any, Callable, Dict

from absl import logging
from etils import epath
import jax
import numpy as np

from seg2vid_jax import evaluation
from seg2vid_jax import input_pipeline


@dataclasses.dataclass(frozen=True)
class Task:
  """What the shared training loop (`seg2vid_jax.train`) needs from a model family."""
  name: str  # 'img2vid' or 'img2img': config.task, and what checkpoints record.
  create_model: Callable[..., Any]  # config -> model(s)
  create_state: Callable[..., Any]  # (config, model, rng) -> state with .step and .params
  step_fn: Callable[..., Callable]  # config -> fn(state, batch, vgg_params) -> (state, terms)
  evaluate: Callable[..., Dict[str, float]]  # (config, model, state, mesh, step, workdir, writer)
  write_samples: Callable[..., None]  # (config, model, state, batch, step, workdir, writer)
  describe: Callable[..., str]  # config -> a name for the log


def resolve_workdir(workdir: str) -> str:
  """An absolute local path, or a URL (gs://...) left as it is."""
  return str(workdir) if '://' in str(workdir) else os.path.abspath(workdir)


def write_workdir_file(workdir: str, relative: str, data: bytes):
  """Writes `data` to <workdir>/<relative> on a local disk or a bucket (gs://...)."""
  path = epath.Path(workdir) / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return str(path)


def create_mesh() -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over all devices of all processes."""
  return jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))


def replicated_sharding(mesh):
  """The sharding of arrays every device holds whole (parameters, metrics)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def run_evaluation(config, mesh, batch_fn, params, step: int, workdir: str, writer=None,
                   finish=None, title: str = 'Evaluation'):
  """The evaluation loop of every task over the held-out split.

  `batch_fn(params, index, batch) -> (per_clip, mask, extra)` runs jitted on the devices
  (`params`, e.g. the model's variables, is its argument rather than a baked-in constant): `per_clip` maps
  metric names to (B, K) or (B,) arrays, `mask` marks the real clips of the batch (the last
  one is padded), `extra` is a pytree that is summed over the batches (None: nothing).
  `finish(results, extra_sum)` may add to the averaged results. They are written to
  TensorBoard (eval/...) and to <workdir>/eval/step_<step>.json, and logged.
  """
  fn = jax.jit(batch_fn, out_shardings=replicated_sharding(mesh))
  accumulator = evaluation.MetricAccumulator()
  total = None
  sharding = input_pipeline.data_sharding(mesh.devices.ravel())
  for i, batch in enumerate(input_pipeline.create_eval_iterator(config, sharding=sharding)):
    per_clip, mask, extra = jax.device_get(fn(params, i, batch))
    accumulator.update(per_clip, mask)
    if extra is not None:
      total = extra if total is None else jax.tree.map(np.add, total, extra)
  results = accumulator.result()
  if finish is not None:
    finish(results, total)
  if jax.process_index() == 0:
    write_workdir_file(workdir, f'eval/step_{step}.json',
                       json.dumps(results, indent=1, sort_keys=True).encode())
  if writer is not None:
    writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()})
  logging.info('%s at step %d: %s', title, step,
               {k: round(v, 4) for k, v in results.items() if 'frame_' not in k})
  return results
