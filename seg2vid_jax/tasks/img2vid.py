"""Stage 2 of seg2vid (first frame + label map + z -> future frames) as a task of the shared
training loop: its model and state, train step, evaluation (posterior, prior samples, the
baselines) and sample sheets. The loop itself is `seg2vid_jax.train`.

The random numbers of a step (latent eps, refinement noise) are `fold_in(seed, step)`, so a run
resumed from a checkpoint repeats the losses of an uninterrupted one.
"""

import os
import tempfile
from typing import Any

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from seg2vid_jax import evaluation
from seg2vid_jax import visualize
from seg2vid_jax.losses import img2vid as losses
from seg2vid_jax.models import Img2Vid, init_variables
from seg2vid_jax.ops import warp
from seg2vid_jax.tasks import base


class TrainState(train_state.TrainState):
  """Parameters, optimiser state and step, plus the BatchNorm running statistics."""
  batch_stats: Any


def create_model(config: ml_collections.ConfigDict) -> Img2Vid:
  """The Img2Vid model of a config (image size, K and two_path from the data fields)."""
  fields = dict(config.model)
  fields['dtype'] = jnp.dtype(fields.pop('dtype', 'float32'))
  return Img2Vid(image_size=tuple(config.image_size),
                 num_predicted_frames=config.num_frames - 1, two_path=config.two_path,
                 **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def learning_rate_schedule(config):
  """The configured learning rate as an optax schedule.

  'constant' is published; 'cosine' warms up and decays to 0 over the run; 'piecewise' keeps
  the rate constant and multiplies it by `lr_decay_factor` at each of `lr_decay_boundaries`
  (the usual step decay once the training loss is flat).
  """
  if config.lr_schedule == 'constant':
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == 'cosine':
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps,
                                              config.num_train_steps)
  if config.lr_schedule == 'piecewise':
    boundaries = tuple(config.lr_decay_boundaries)
    if not boundaries or list(boundaries) != sorted(set(boundaries)) or boundaries[0] <= 0:
      raise ValueError(f'config.lr_decay_boundaries={boundaries!r}: the piecewise schedule '
                       'needs increasing positive steps')
    return optax.piecewise_constant_schedule(
        config.learning_rate, {int(b): config.lr_decay_factor for b in boundaries})
  raise ValueError(f'config.lr_schedule={config.lr_schedule!r}: use constant, cosine or piecewise')


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
               kl_free_nats: float = 0.0, use_labels: bool = True,
               posterior_mean: bool = False):
  """One Adam step on the nine-term objective; returns the new state and the loss terms
  (`learning_rate` is only reported with them). `use_labels` False: the image-only model.
  `posterior_mean` True trains with z = mu instead of a posterior sample: a deterministic
  autoencoder, a probe of whether the decoder can read the motion code at all (not a cVAE)."""
  def loss_fn(params):
    outputs, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['video'],
        model_labels(batch, use_labels), train=True, posterior_mean=posterior_mean,
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


def step_fn(config):
  """fn(state, batch, vgg_params) -> (state, terms): `train_step` with the config's settings."""
  schedule = learning_rate_schedule(config)
  return lambda s, b, v: train_step(s, b, v, seed=config.seed,
                                    weights=loss_weights(config, s.step),
                                    learning_rate=schedule(s.step),
                                    kl_free_nats=config.get('kl_free_nats', 0.0),
                                    use_labels=bool(config.model.num_classes),
                                    posterior_mean=config.get('train_posterior_mean', False))


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

  kinds: posterior (z = mu), posterior_warped (its warped first frame, before the
  refinement), prior_sample (the first prior sample), prior_best_of_n (the best
  of the N samples of each clip, one sample per clip and metric), copy_first_frame and
  zero_flow baselines, and with the exact flow (synthetic data) the oracle exact_flow_warp:
  the first frame warped by it, a bound on what the flow alone gives. Also the posterior's
  KL per clip in nats, its mean forward mask, the spread between prior samples (pixels and
  flow), and the fine detail kept (`detail`: Laplacian energy against the true frame's) of
  each prediction. Flow end-point errors (synthetic data) are over the valid pixels
  (`epe_px`) and over the moving-object pixels only (`epe_obj_px`).
  """
  video = batch['video']
  gt = video[:, 1:]
  out = {'kl_nats/posterior': evaluation.kl_per_clip(posterior['mu'], posterior['logvar']),
         'mask_fw/posterior': jnp.mean(posterior['mask_fw'], axis=(2, 3))}
  predictions = {'posterior': posterior['refined'], 'posterior_warped': posterior['warped'],
                 'copy_first_frame': evaluation.copy_first_frame_baseline(video)}
  if priors:
    predictions['prior_sample'] = priors[0]['refined']
  if 'flow' in batch:  # Oracle: the first frame warped by the exact flow, no refinement.
    predictions['exact_flow_warp'] = warp(
        predictions['copy_first_frame'].astype(jnp.float32), batch['flow'])
  for kind, pred in predictions.items():
    out[f'psnr/{kind}'] = evaluation.psnr(pred, gt)
    out[f'ssim/{kind}'] = evaluation.ssim(pred, gt)
    out[f'detail/{kind}'] = evaluation.detail_ratio(pred, gt)
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
  """`eval_metrics` over the held-out split (`base.run_evaluation`). Every batch has its own
  refinement noise and posterior rngs; `config.eval_shared_prior_z` (the authors' protocol)
  gives each prior sample one z for the whole set."""
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  shared = bool(config.get('eval_shared_prior_z', False))
  rng = jax.random.key(config.seed + 1)
  prior_rng = jax.random.key(config.seed + 3)  # One z per sample for the whole set (shared).

  def batch_fn(v, i, batch):
    mask = batch.pop('mask')
    samples = generate_samples(model, v, batch, jax.random.fold_in(rng, i),
                               config.num_prior_samples, prior_rng if shared else None, shared)
    return eval_metrics(batch, *samples), mask, None
  return base.run_evaluation(config, mesh, batch_fn, variables, step, workdir, writer)


def write_sample_sheet(config, model, state, batch, step: int, workdir: str, writer=None):
  """A GIF grid per clip: ground truth, the posterior (z = mu) reconstruction and two prior
  samples, each with its forward flow (colour wheel), and the posterior's forward mask."""
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  n = config.num_sample_clips

  def samples(v, b, r):
    b = {k: b[k][:n] for k in ('video', 'label_onehot') if k in b}
    posterior, priors = generate_samples(model, v, b, r, 2)
    return b['video'], posterior, priors
  replicated = base.replicated_sharding(state.step.sharding.mesh)
  video, posterior, priors = jax.device_get(jax.jit(samples, out_shardings=replicated)(
      variables, batch, jax.random.key(config.seed + 2)))
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
        path = base.write_workdir_file(workdir, f'samples/step_{step:07d}.gif', f.read())
    logging.info('Wrote sample sheet %s', path)
  if writer is not None:
    writer.write_images(step, {'samples': np.concatenate(list(frames), axis=1)[None]})




def describe(config):
  return 'img2vid ' + ('two-path' if config.two_path else 'w_mask')


TASK = base.Task(name='img2vid', create_model=create_model, create_state=create_train_state,
                 step_fn=step_fn, evaluate=evaluate, write_samples=write_sample_sheet,
                 describe=describe)
