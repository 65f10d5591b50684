"""Stage 1 of seg2vid, label map -> first frame, as a task of the shared training loop.

pix2pixHD's global generator and multi-scale discriminators (`models/pix2pixhd.py`), trained
with LSGAN + feature matching + VGG (`losses/img2img.py`), both networks updated in one jitted,
data-parallel step with their own Adam. Checkpoints, resuming, SIGTERM, summaries and the
progress report are the shared loop's (`seg2vid_jax.train`, ``config.task='img2img'``).
Evaluation: PSNR/SSIM of the generated against the real first frame, and a distance between
the distributions of real and generated images that needs no pretrained network: per semantic
class, the L1 distance between the normalised histograms of colours and of gradient
magnitudes, averaged over the classes present.
"""

import io
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from seg2vid_jax import evaluation
from seg2vid_jax import visualize
from seg2vid_jax.losses import img2img as losses
from seg2vid_jax.models import pix2pixhd
from seg2vid_jax.tasks import base

HIST_BINS = 16


class GanState(flax.struct.PyTreeNode):
  """Both networks' parameters and optimiser states, and the step."""
  step: jax.Array
  gen_params: Any
  disc_params: Any
  gen_opt_state: Any
  disc_opt_state: Any
  gen_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  disc_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)

  @property
  def params(self):
    return {'generator': self.gen_params, 'discriminator': self.disc_params}


def create_models(config):
  """(generator, discriminator) of the config's `img2img` fields."""
  c = config.img2img
  gen = pix2pixhd.GlobalGenerator(output_channels=config.model.channels, ngf=c.ngf,
                                  n_downsampling=c.n_downsampling, n_blocks=c.n_blocks)
  disc = pix2pixhd.MultiscaleDiscriminator(num_D=c.num_D, ndf=c.ndf, n_layers=c.n_layers)
  return gen, disc


def create_state(config, models, rng) -> GanState:
  """Initial parameters of both networks and their Adam states (lr 2e-4, beta1 0.5)."""
  gen, disc = models
  gen_vars, disc_vars = pix2pixhd.init_variables(gen, disc, rng, config.model.num_classes,
                                                 tuple(config.image_size))
  gen_tx = losses.optimizer(config.img2img.learning_rate)
  disc_tx = losses.optimizer(config.img2img.learning_rate)
  return GanState(step=jnp.zeros((), jnp.int32), gen_params=gen_vars['params'],
                  disc_params=disc_vars['params'],
                  gen_opt_state=gen_tx.init(gen_vars['params']),
                  disc_opt_state=disc_tx.init(disc_vars['params']), gen_tx=gen_tx,
                  disc_tx=disc_tx)


def gan_step(state: GanState, batch, vgg_params, *, gen, disc, weights):
  """One update of both networks from one backward pass (see `losses.gan_losses`)."""
  (_, aux), (g_grads, d_grads) = jax.value_and_grad(
      losses.gan_losses, argnums=(0, 1), has_aux=True)(
          state.gen_params, state.disc_params, gen, disc, batch, vgg_params, weights)
  g_updates, gen_opt_state = state.gen_tx.update(g_grads, state.gen_opt_state,
                                                 state.gen_params)
  d_updates, disc_opt_state = state.disc_tx.update(d_grads, state.disc_opt_state,
                                                   state.disc_params)
  new_state = state.replace(step=state.step + 1,
                            gen_params=optax.apply_updates(state.gen_params, g_updates),
                            disc_params=optax.apply_updates(state.disc_params, d_updates),
                            gen_opt_state=gen_opt_state, disc_opt_state=disc_opt_state)
  terms = {f'g_{k}': v for k, v in aux['generator'].items()}
  terms.update({f'd_{k}': v for k, v in aux['discriminator'].items()})
  terms['total'] = aux['generator']['total'] + aux['discriminator']['total']
  return new_state, terms


def step_fn(config):
  """fn(state, batch, vgg_params) -> (state, terms) for the shared training loop."""
  gen, disc = create_models(config)
  weights = dict(losses.WEIGHTS, **(config.get('img2img_loss_weights') or {}))
  return lambda s, b, v: gan_step(s, b, v, gen=gen, disc=disc, weights=weights)


def generate_frames(gen, gen_params, label_onehot):
  """First frames (B, H, W, C) in [0, 1] from label maps (B, H, W, classes)."""
  return gen.apply({'params': gen_params}, label_onehot)


def class_histograms(images, labels, num_classes: int, bins: int = HIST_BINS):
  """Per class, histograms of colour values and of gradient magnitudes: (classes, 2, bins).

  Colours: every channel value of the class's pixels; gradients: |dx| + |dy| of the grey
  image, clipped to [0, 1]. Counts, so that they add up over batches.
  """
  grey = jnp.mean(images, axis=-1)
  grad = jnp.zeros_like(grey)
  grad = grad.at[:, :, :-1].add(jnp.abs(jnp.diff(grey, axis=2)))
  grad = grad.at[:, :-1, :].add(jnp.abs(jnp.diff(grey, axis=1)))
  to_bin = lambda x: jnp.clip((x * bins).astype(jnp.int32), 0, bins - 1)
  onehot = jax.nn.one_hot(labels, num_classes)  # (B, H, W, classes)
  colour = jnp.einsum('bhwk,bhwcn->kn', onehot, jax.nn.one_hot(to_bin(images), bins))
  gradient = jnp.einsum('bhwk,bhwn->kn', onehot, jax.nn.one_hot(to_bin(jnp.clip(grad, 0, 1)),
                                                                 bins))
  return jnp.stack([colour, gradient], axis=1)


def histogram_distance(real, fake):
  """Mean over present classes of the L1 distance of normalised histograms (0 = same, 2 = disjoint),
  for colours and gradients: (classes, 2, bins) counts -> {'colour': d, 'gradient': d}."""
  present = real.sum(-1)[:, 0] > 0
  norm = lambda h: h / np.maximum(h.sum(-1, keepdims=True), 1)
  d = np.abs(norm(real) - norm(fake)).sum(-1)  # (classes, 2)
  return {'colour': float(d[present, 0].mean()), 'gradient': float(d[present, 1].mean())}


def evaluate(config, models, state, mesh, step: int, workdir: str, writer=None):
  """PSNR/SSIM against the real first frames and the histogram distances, over the eval split."""
  gen, _ = models
  k = config.model.num_classes  # Histogram row k holds the padding clips.

  def batch_fn(params, i, batch):
    del i
    real = batch['video'][:, 0]
    fake = generate_frames(gen, params, batch['label_onehot'])
    mask = batch['mask']
    per_clip = {'psnr/generated': evaluation.psnr(fake[:, None], real[:, None]),
                'ssim/generated': evaluation.ssim(fake[:, None], real[:, None])}
    labels = jnp.where(mask[:, None, None], batch['labels'], k)
    return per_clip, mask, (class_histograms(real, labels, k + 1),
                            class_histograms(fake, labels, k + 1))

  def finish(results, histograms):
    real, fake = histograms
    for name, value in histogram_distance(real[:k], fake[:k]).items():
      results[f'histogram_l1/{name}'] = value
  return base.run_evaluation(config, mesh, batch_fn, state.gen_params, step, workdir, writer,
                             finish, title='Stage-1 evaluation')


def write_samples(config, models, state, batch, step: int, workdir: str, writer=None):
  """A sheet of label maps, real and generated first frames (PNG and TensorBoard)."""
  gen, _ = models
  n = config.num_sample_clips
  replicated = base.replicated_sharding(state.step.sharding.mesh)
  fn = jax.jit(lambda p, b: (b['labels'][:n], b['video'][:n, 0],
                             generate_frames(gen, p, b['label_onehot'][:n])),
               out_shardings=replicated)
  labels, real, fake = jax.device_get(fn(state.gen_params, batch))
  sheet = visualize.sample_sheet_batch([{
      'label map': visualize.labels_to_color(labels[i])[None],
      'real': visualize.to_uint8(real[i])[None],
      'generated': visualize.to_uint8(fake[i])[None]} for i in range(labels.shape[0])])[0]
  if jax.process_index() == 0:
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format='PNG')
    base.write_workdir_file(workdir, f'samples/step_{step:07d}.png', buffer.getvalue())
  if writer is not None:
    writer.write_images(step, {'samples': sheet[None]})


def describe(config):
  c = config.img2img
  return f'img2img (pix2pixHD, ngf {c.ngf}, {c.n_blocks} blocks, {c.num_D} discriminators)'


TASK = base.Task(name='img2img', create_model=create_models, create_state=create_state,
                 step_fn=step_fn, evaluate=evaluate, write_samples=write_samples,
                 describe=describe)
