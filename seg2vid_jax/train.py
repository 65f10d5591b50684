"""Training and evaluation loop of seg2vid_jax: `train_and_evaluate(config, workdir)`.

Data parallel over every device of every host: `jax.jit` over a 1-D `data` mesh, parameters
replicated and batches sharded (what `pmap` became). BatchNorm statistics are over the global
batch, so N devices compute exactly what one device computes on the same batch. The random
numbers of a step (latent eps, refinement noise) are `fold_in(seed, step)` and the data order
is a function of the step, so a run resumed from a checkpoint repeats the losses of an
uninterrupted one.
"""

import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
from typing import Any, Callable, Dict

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
from flax.training import train_state
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from seg2vid_jax import evaluation
from seg2vid_jax import input_pipeline
from seg2vid_jax import losses
from seg2vid_jax import vgg_weights
from seg2vid_jax import visualize
from seg2vid_jax.models import Img2Vid, init_variables
from seg2vid_jax.ops import conv


class TrainState(train_state.TrainState):
  """Parameters, optimiser state and step, plus the BatchNorm running statistics."""
  batch_stats: Any


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


def create_model(config: ml_collections.ConfigDict) -> Img2Vid:
  """The Img2Vid model of a config (image size, K and two_path from the data fields)."""
  fields = dict(config.model)
  fields['dtype'] = jnp.dtype(fields.pop('dtype', 'float32'))
  return Img2Vid(image_size=tuple(config.image_size),
                 num_predicted_frames=config.num_frames - 1, two_path=config.two_path,
                 **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def create_mesh() -> jax.sharding.Mesh:
  """A 1-D 'data' mesh over all devices of all processes."""
  return jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))


def resolve_workdir(workdir: str) -> str:
  """An absolute local path, or a URL (gs://...) left as it is."""
  return str(workdir) if '://' in str(workdir) else os.path.abspath(workdir)


def write_workdir_file(workdir: str, relative: str, data: bytes):
  """Writes `data` to <workdir>/<relative> on a local disk or a bucket (gs://...)."""
  path = epath.Path(workdir) / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return str(path)


def write_eval_json(workdir: str, step: int, results):
  """<workdir>/eval/step_<step>.json, from process 0."""
  if jax.process_index() == 0:
    write_workdir_file(workdir, f'eval/step_{step}.json',
                       json.dumps(results, indent=1, sort_keys=True).encode())


def replicated_sharding(mesh):
  """The sharding of arrays every device holds whole (parameters, metrics)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


def learning_rate_schedule(config):
  """The configured learning rate as an optax schedule (constant as published, or cosine)."""
  if config.lr_schedule == 'constant':
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps,
                                              config.num_train_steps)
  raise ValueError(f'config.lr_schedule={config.lr_schedule!r}: use constant or cosine')


def create_optimizer(config):
  """Adam with the configured schedule and optional gradient clipping."""
  adam = optax.adam(learning_rate_schedule(config), b1=config.b1, b2=config.b2)
  if config.grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adam)
  return adam


def create_train_state(config, model, rng) -> TrainState:
  """Initial parameters, BatchNorm statistics and optimiser state."""
  variables = init_variables(model, rng)
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           batch_stats=variables['batch_stats'], tx=create_optimizer(config))


def load_vgg(config):
  """The frozen VGG19 parameters for the perceptual term, or None (the term is then off)."""
  if not config.vgg_weights:
    logging.warning('config.vgg_weights is not set: the perceptual (VGG) loss term is off. '
                    'Convert VGG19 weights with `python -m seg2vid_jax.vgg_weights`.')
    return None
  return vgg_weights.load(config.vgg_weights)


def step_rngs(seed: int, step):
  """The latent and noise rngs of a training step: a function of (seed, step) only."""
  latent, noise = jax.random.split(jax.random.fold_in(jax.random.key(seed), step))
  return {'latent': latent, 'noise': noise}


def model_labels(batch, use_labels: bool):
  """The model's label-map input for a batch: the one-hot map, or None for the image-only
  model (num_classes = 0, `use_labels` False), which takes none."""
  if not use_labels:
    return None
  if 'label_onehot' not in batch:
    raise ValueError('this dataset has no label maps: train the image-only model '
                     '(config.model.num_classes = 0, as configs/kth.py)')
  return batch['label_onehot']


def train_step(state: TrainState, batch, vgg_params, *, seed: int, weights, learning_rate=None,
               kl_free_nats: float = 0.0, use_labels: bool = True):
  """One Adam step on the nine-term objective; returns the new state and the loss terms
  (`learning_rate` is only reported with them). `use_labels` False: the image-only model."""
  def loss_fn(params):
    outputs, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['video'],
        model_labels(batch, use_labels), train=True,
        rngs=step_rngs(seed, state.step),
        mutable=['batch_stats'])
    terms = losses.objective(outputs, batch['video'], vgg_params, weights, kl_free_nats,
                             batch.get('flow'), batch.get('valid'), batch.get('labels'))
    return terms['total'], (terms, updates['batch_stats'])

  grads, (terms, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  terms['grad_norm'] = optax.tree.norm(grads)
  if learning_rate is not None:
    terms['learning_rate'] = learning_rate
  return new_state, terms


def loss_weights(config, step):
  """The objective's weights at `step`: the published ones with the config's overrides, the
  KL weight ramped linearly from 0 over `kl_warmup_steps` (0: constant, as published)."""
  weights = dict(losses.WEIGHTS, **(config.loss_weights or {}))
  warmup = config.get('kl_warmup_steps', 0)
  if warmup:
    weights['kld'] = weights['kld'] * jnp.minimum(1.0, step / warmup)
  return weights


def img2vid_step_fn(config):
  """fn(state, batch, vgg_params) -> (state, terms): `train_step` with the config's settings."""
  schedule = learning_rate_schedule(config)
  return lambda s, b, v: train_step(s, b, v, seed=config.seed,
                                    weights=loss_weights(config, s.step),
                                    learning_rate=schedule(s.step),
                                    kl_free_nats=config.get('kl_free_nats', 0.0),
                                    use_labels=bool(config.model.num_classes))


def make_train_step(config, mesh, state):
  """The task's train step jitted over the mesh: state replicated and donated, batch sharded."""
  replicated = replicated_sharding(mesh)
  step = jax.jit(
      get_task(config).step_fn(config),
      in_shardings=(jax.tree.map(lambda _: replicated, state),
                    input_pipeline.data_sharding(mesh.devices.ravel()), replicated),
      out_shardings=(jax.tree.map(lambda _: replicated, state), replicated),
      donate_argnums=0, compiler_options=conv.compiler_options())
  return step


def check_finite(step: int, terms: Dict[str, float]):
  """Raises `NonFiniteLossError` naming the step and every non-finite term."""
  bad = [name for name, value in terms.items() if not np.isfinite(value)]
  if bad:
    raise NonFiniteLossError(
        f'non-finite loss at step {step}: {", ".join(f"{n}={terms[n]}" for n in bad)}; '
        'training stopped, the last good checkpoint is kept')


class PreemptionWatcher:
  """Turns SIGTERM (preemption) into a flag that all processes agree on at a step boundary."""

  def __init__(self):
    self._flag = threading.Event()
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint at the end of this step.')
    self._flag.set()

  def should_stop(self) -> bool:
    local = self._flag.is_set()
    if jax.process_count() == 1:
      return local
    return bool(multihost_utils.process_allgather(np.int32(local)).max())


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  """Orbax manager of <workdir>/checkpoints keeping the newest `keep_checkpoints`."""
  return ocp.CheckpointManager(
      str(epath.Path(resolve_workdir(workdir)) / 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True))


def restore_or_keep(manager: ocp.CheckpointManager, state: TrainState) -> TrainState:
  """The latest checkpoint restored into `state`'s structure and shardings, or `state`."""
  step = manager.latest_step()
  if step is None:
    return state
  logging.info('Resuming from checkpoint at step %d in %s.', step, manager.directory)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def save_checkpoint(manager, state, step: int):
  """Saves `state` as step `step` and waits, so that a crash right after cannot lose it."""
  manager.save(step, args=ocp.args.StandardSave(state), force=True)
  manager.wait_until_finished()


def prior_latents(model, rng, batch_size: int, num_samples: int, shared: bool = False):
  """`num_samples` prior draws z ~ N(0, I), each (B, n, z_dim).

  shared=True is the authors' test protocol: sample i uses one z for every clip of the set
  (the caller passes the same `rng` for every batch).
  """
  shape = (1 if shared else batch_size,) + model.latent_shape
  return [jnp.broadcast_to(jax.random.normal(jax.random.fold_in(rng, i), shape),
                           (batch_size,) + model.latent_shape) for i in range(num_samples)]


def generate_samples(model, variables, batch, rng, num_samples: int, prior_rng=None,
                     shared_prior: bool = False):
  """Eval-mode predictions of a batch: the posterior (z = mu of the motion encoder on the true
  clip, its reconstruction) and `num_samples` prior samples (z ~ N(0, I), from the first frame
  and label map only), all with the same refinement noise. `prior_rng` (default: from `rng`)
  draws the prior z, see `prior_latents`."""
  video, labels = batch['video'], model_labels(batch, bool(model.num_classes))
  noise_rng, latent_rng = jax.random.split(rng)
  noise = jax.random.normal(noise_rng, video[:, 0].shape)
  posterior = model.apply(variables, video, labels, noise, posterior_mean=True)
  zs = prior_latents(model, latent_rng if prior_rng is None else prior_rng, video.shape[0],
                     num_samples, shared_prior)
  priors = [model.apply(variables, video[:, :1], labels, noise, z) for z in zs]
  return posterior, priors


def moved_flow(outputs):
  """The forward flow that moves the pixels of the first frame: flow x mask_fw."""
  return outputs['flow'] * outputs['mask_fw'][..., None]


def eval_metrics(batch, posterior, priors):
  """Per-clip metrics of a batch: (B, K) arrays (per frame) or (B,) (per clip), 'name/kind'.

  kinds: posterior (z = mu), prior_sample (the first prior sample), prior_best_of_n (the best
  of the N samples of each clip, one sample per clip and metric), copy_first_frame and
  zero_flow baselines. Also the posterior's KL per clip in nats, its mean forward mask, and
  the spread between prior samples (pixels and flow). Flow end-point errors (synthetic data)
  are over the valid pixels (`epe_px`) and over the moving-object pixels only (`epe_obj_px`).
  """
  video = batch['video']
  gt = video[:, 1:]
  out = {'kl_nats/posterior': evaluation.kl_per_clip(posterior['mu'], posterior['logvar']),
         'mask_fw/posterior': jnp.mean(posterior['mask_fw'], axis=(2, 3))}
  predictions = {'posterior': posterior['refined'],
                 'copy_first_frame': evaluation.copy_first_frame_baseline(video)}
  if priors:
    predictions['prior_sample'] = priors[0]['refined']
  for kind, pred in predictions.items():
    out[f'psnr/{kind}'] = evaluation.psnr(pred, gt)
    out[f'ssim/{kind}'] = evaluation.ssim(pred, gt)
  if priors:
    out['psnr/prior_best_of_n'] = evaluation.best_of_n(
        jnp.stack([evaluation.psnr(p['refined'], gt) for p in priors]))
    out['ssim/prior_best_of_n'] = evaluation.best_of_n(
        jnp.stack([evaluation.ssim(p['refined'], gt) for p in priors]))
  if len(priors) > 1:
    out['spread/prior_pixels'] = evaluation.sample_spread(
        jnp.stack([p['refined'] for p in priors]))
    out['spread/prior_flow_px'] = evaluation.flow_spread_px(
        jnp.stack([moved_flow(p) for p in priors]))
  if 'flow' in batch:
    regions = {'epe_px': batch.get('valid')}
    if 'valid' in batch:
      objects = evaluation.moving_object_mask(batch['labels'], batch['flow'], batch['valid'])
      regions['epe_obj_px'] = objects
      # Does the model move the objects, or close the mask on them and paint them over?
      count = jnp.sum(objects, axis=(2, 3))
      out['mask_fw/moving_objects'] = jnp.where(
          count > 0, jnp.sum(posterior['mask_fw'] * objects, axis=(2, 3)) /
          jnp.maximum(count, 1), jnp.nan)
    flows = {'posterior': moved_flow(posterior), 'zero_flow': jnp.zeros_like(batch['flow'])}
    if priors:
      flows['prior_sample'] = moved_flow(priors[0])
    for metric, region in regions.items():
      epe = lambda f, region=region: evaluation.endpoint_error_px(f, batch['flow'], region)
      for kind, flow in flows.items():
        out[f'{metric}/{kind}'] = epe(flow)
      if priors:
        out[f'{metric}/prior_best_of_n'] = evaluation.best_of_n(
            jnp.stack([epe(moved_flow(p)) for p in priors]), higher_is_better=False)
  return out


def evaluate(config, model, state: TrainState, mesh, step: int, workdir: str, writer=None):
  """Metrics on the held-out split, to TensorBoard and <workdir>/eval/step_<step>.json."""
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  shared = bool(config.get('eval_shared_prior_z', False))

  def batch_metrics(v, b, r, prior_rng):
    mask = b.pop('mask')
    samples = generate_samples(model, v, b, r, config.num_prior_samples, prior_rng, shared)
    return eval_metrics(b, *samples), mask
  metrics_fn = jax.jit(batch_metrics, out_shardings=replicated_sharding(mesh))
  accumulator = evaluation.MetricAccumulator()
  rng = jax.random.key(config.seed + 1)
  prior_rng = jax.random.key(config.seed + 3)  # One z per sample for the whole set (shared).
  sharding = input_pipeline.data_sharding(mesh.devices.ravel())
  for i, batch in enumerate(input_pipeline.create_eval_iterator(config, sharding=sharding)):
    batch_rng = jax.random.fold_in(rng, i)
    per_frame, mask = jax.device_get(metrics_fn(variables, batch, batch_rng,
                                                prior_rng if shared else None))
    accumulator.update(per_frame, mask)
  results = accumulator.result()
  write_eval_json(workdir, step, results)
  if writer is not None:
    writer.write_scalars(step, {f'eval/{k}': v for k, v in results.items()})
  logging.info('Evaluation at step %d: %s', step,
               {k: round(v, 4) for k, v in results.items() if k.endswith('/mean')})
  return results


def write_sample_sheet(config, model, state, batch, step: int, workdir: str, writer=None):
  """A GIF grid per clip: ground truth, the posterior (z = mu) reconstruction and two prior
  samples, each with its forward flow (colour wheel), and the posterior's forward mask."""
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  n = config.num_sample_clips

  def samples(v, b, r):
    b = {k: b[k][:n] for k in ('video', 'label_onehot') if k in b}
    posterior, priors = generate_samples(model, v, b, r, 2)
    return b['video'], posterior, priors
  video, posterior, priors = jax.device_get(jax.jit(samples, out_shardings=replicated_sharding(
      state.step.sharding.mesh))(variables, batch, jax.random.key(config.seed + 2)))
  moved = [moved_flow(o) for o in [posterior] + priors]
  sheets = []
  for i in range(video.shape[0]):
    # One colour scale per clip, so that the three predictions' flows compare.
    colors = visualize.flow_to_color(np.stack([f[i] for f in moved]))
    sheets.append({
        'ground truth': visualize.to_uint8(video[i, 1:]),
        'posterior (z = mu)': visualize.to_uint8(posterior['refined'][i]),
        'prior sample 1': visualize.to_uint8(priors[0]['refined'][i]),
        'prior sample 2': visualize.to_uint8(priors[1]['refined'][i]),
        'flow: posterior': colors[0],
        'flow: prior 1': colors[1],
        'flow: prior 2': colors[2],
        'mask fw': visualize.mask_to_image(posterior['mask_fw'][i]),
    })
  frames = visualize.sample_sheet_batch(sheets)
  if jax.process_index() == 0:
    with tempfile.TemporaryDirectory() as tmp:
      visualize.write_gif(os.path.join(tmp, 'sheet.gif'), frames)
      with open(os.path.join(tmp, 'sheet.gif'), 'rb') as f:
        path = write_workdir_file(workdir, f'samples/step_{step:07d}.gif', f.read())
    logging.info('Wrote sample sheet %s', path)
  if writer is not None:
    writer.write_images(step, {'samples': np.concatenate(list(frames), axis=1)[None]})


def restore_state(config, workdir: str):
  """(model, mesh, state) of the latest checkpoint in `workdir`; an error if there is none."""
  task = get_task(config)
  mesh = create_mesh()
  model = task.create_model(config)
  state = jax.device_put(task.create_state(config, model, jax.random.key(config.seed)),
                         replicated_sharding(mesh))
  manager = checkpoint_manager(workdir, config)
  if manager.latest_step() is None:
    raise FileNotFoundError(f'no checkpoint in {manager.directory}: train first '
                            f'(python -m seg2vid_jax.main --config=... --workdir={workdir})')
  state = restore_or_keep(manager, state)
  manager.close()
  return model, mesh, state


def evaluate_checkpoint(config, workdir: str):
  """--mode=eval: evaluates the latest checkpoint of `workdir`."""
  model, mesh, state = restore_state(config, workdir)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  results = get_task(config).evaluate(config, model, state, mesh, int(state.step),
                                      resolve_workdir(workdir), writer)
  writer.flush()
  return results


def _progress_bar(config, start: int):
  """A tqdm bar on interactive consoles of process 0, else None."""
  if not (config.progress_bar and jax.process_index() == 0 and os.isatty(2)):
    return None
  import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm.tqdm(total=config.num_train_steps, initial=start, unit='step', dynamic_ncols=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains seg2vid on `config` in `workdir` (resuming from its checkpoints) and evaluates.

  Returns the final train state. Raises `NonFiniteLossError` if a loss becomes NaN/inf.
  """
  workdir = resolve_workdir(workdir)
  task = get_task(config)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  mesh = create_mesh()
  model = task.create_model(config)
  replicated = replicated_sharding(mesh)
  state = jax.device_put(task.create_state(config, model, jax.random.key(config.seed)),
                         replicated)
  manager = checkpoint_manager(workdir, config)
  state = restore_or_keep(manager, state)
  start = int(state.step)
  vgg_params = jax.device_put(load_vgg(config), replicated)
  p_train_step = make_train_step(config, mesh, state)
  logging.info('Task %s with %s parameters on %d devices (%d processes), global batch %d.',
               task.describe(config), f'{sum(x.size for x in jax.tree.leaves(state.params)):,}',
               jax.device_count(), jax.process_count(), config.batch_size)
  if start == 0:
    writer.write_hparams({k: v for k, v in config.to_dict().items()
                          if isinstance(v, (int, float, str, bool))})

  train_iter = input_pipeline.create_train_iterator(
      config, config.seed, input_pipeline.data_sharding(mesh.devices.ravel()), start_step=start)
  report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps,
                                           writer=writer, every_steps=config.log_every_steps)
  watcher = PreemptionWatcher()
  bar = _progress_bar(config, start)
  evaluating = config.get('num_eval_clips') != 0  # 0: no evaluation at all.
  sums, count, tic = {}, 0, time.time()
  step, preempted = start, False
  for step in range(start + 1, config.num_train_steps + 1):
    with jax.profiler.StepTraceAnnotation('train', step_num=step):
      batch = next(train_iter)
      state, terms = p_train_step(state, batch, vgg_params)
    terms = jax.device_get(terms)
    check_finite(step, terms)
    for k, v in terms.items():
      sums[k] = sums.get(k, 0.0) + float(v)
    count += 1
    report(step)
    if bar is not None:
      bar.update(1)
      bar.set_postfix(loss=f'{terms["total"]:.4f}')
    if step % config.log_every_steps == 0 or step == config.num_train_steps:
      scalars = {f'train/{k}': v / count for k, v in sums.items()}
      scalars['train/steps_per_sec'] = count / (time.time() - tic)
      writer.write_scalars(step, scalars)
      sums, count, tic = {}, 0, time.time()
    if config.sample_every_steps and step % config.sample_every_steps == 0:
      task.write_samples(config, model, state, batch, step, workdir, writer)
    preempted = watcher.should_stop()
    if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps or preempted:
      save_checkpoint(manager, state, step)
    if evaluating and config.eval_every_steps and step % config.eval_every_steps == 0:
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


@dataclasses.dataclass(frozen=True)
class Task:
  """What the shared training loop needs from a model family (stage 2 or stage 1)."""
  create_model: Callable[..., Any]  # config -> model(s)
  create_state: Callable[..., Any]  # (config, model, rng) -> state with .step and .params
  step_fn: Callable[..., Callable]  # config -> fn(state, batch, vgg_params) -> (state, terms)
  evaluate: Callable[..., Dict[str, float]]  # (config, model, state, mesh, step, workdir, writer)
  write_samples: Callable[..., None]  # (config, model, state, batch, step, workdir, writer)
  describe: Callable[..., str]  # config -> a name for the log


IMG2VID = Task(create_model=create_model, create_state=create_train_state,
               step_fn=img2vid_step_fn, evaluate=evaluate, write_samples=write_sample_sheet,
               describe=lambda c: 'img2vid ' + ('two-path' if c.two_path else 'w_mask'))


def get_task(config) -> Task:
  """The task of a config: 'img2vid' (stage 2, default) or 'img2img' (stage 1)."""
  name = config.get('task', 'img2vid')
  if name == 'img2vid':
    return IMG2VID
  if name == 'img2img':
    from seg2vid_jax import img2img  # pylint: disable=g-import-not-at-top
    return img2img.TASK
  raise ValueError(f'config.task={name!r}: use img2vid or img2img')
