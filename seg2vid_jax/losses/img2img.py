"""The stage-1 objective (label map -> first frame): pix2pixHD's losses, as pure functions.

Generator: LSGAN term + 10 x discriminator feature matching + 10 x VGG perceptual loss.
Discriminator: LSGAN, the mean of its real and fake halves. Term functions return the
*unweighted* term (the structural per-scale and per-layer weights of pix2pixHD included); the
lambdas (``lambda_feat`` = 10 for both feature matching and VGG) are applied once, in
`generator_objective`, from `WEIGHTS`.

Discriminator outputs are what `MultiscaleDiscriminator` returns: a list over scales of the
list of block outputs, the per-patch prediction last. The LSGAN functions also accept a list
of bare predictions.

`gan_losses` evaluates both objectives in one pass such that the gradient of its scalar with
respect to (generator params, discriminator params) is exactly (dL_G/dG, dL_D/dD): the
generator sees the discriminator frozen, the discriminator sees the generated image as a
constant. One jitted step can then update both networks with two optimisers
(see `optimizer`).
"""

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import optax

from seg2vid_jax.models.pix2pixhd import conditioning
from seg2vid_jax.models.vgg import VGG19Features

# pix2pixHD: loss_G = GAN + lambda_feat * (feature matching + VGG), lambda_feat = 10.
WEIGHTS = dict(gan=1.0, feat=10.0, vgg=10.0)
# pix2pixHD's VGGLoss uses relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 weighted 1/32, 1/16,
# 1/8, 1/4, 1. `VGG19Features` stops at relu4_4, so relu5_1 (weight 1) is dropped: these are
# the indices of relu{1,2,3,4}_1 among its 12 outputs, and their weights.
VGG_LAYERS = (0, 2, 4, 8)
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4)
# pix2pixHD's optimisers (both networks): Adam, lr 2e-4, beta1 0.5, beta2 0.999.
LEARNING_RATE = 2e-4
BETA1, BETA2 = 0.5, 0.999


def _prediction(output):
  """A scale's prediction: the last block output when given the feature list."""
  return output[-1] if isinstance(output, (list, tuple)) else output


def _least_squares(outputs, target: float):
  """Sum over scales of mean((D - target)^2) (pix2pixHD's GANLoss with use_lsgan)."""
  return sum(jnp.mean(jnp.square(_prediction(o).astype(jnp.float32) - target))
             for o in outputs)


def lsgan_d_loss(real_outputs, fake_outputs):
  """Discriminator LSGAN loss: 0.5 x (sum_s mean((D_s(real) - 1)^2) + sum_s mean(D_s(fake)^2)).

  The halving follows pix2pixHD (loss_D = (loss_D_fake + loss_D_real) * 0.5), which slows
  the discriminator relative to the generator.
  """
  return 0.5 * (_least_squares(real_outputs, 1.0) + _least_squares(fake_outputs, 0.0))


def lsgan_g_loss(fake_outputs):
  """Generator LSGAN loss: sum over scales of mean((D_s(fake) - 1)^2)."""
  return _least_squares(fake_outputs, 1.0)


def feature_matching_loss(real_features, fake_features, num_D: int,  # pylint: disable=invalid-name
                          n_layers: int):
  """pix2pixHD's discriminator feature matching, without lambda_feat.

  Sum over scales s and blocks j, excluding the final prediction, of
  (1 / num_D) x (4 / (n_layers + 1)) x mean |D_s,j(fake) - stop_gradient(D_s,j(real))|.
  Matching the discriminator's intermediate statistics of real images stabilises the GAN and
  gives the generator a signal at every scale.
  """
  d_weight = 1.0 / num_D
  feat_weight = 4.0 / (n_layers + 1)
  total = 0.0
  for real, fake in zip(real_features, fake_features):
    for r, f in zip(real[:-1], fake[:-1]):
      total = total + d_weight * feat_weight * jnp.mean(
          jnp.abs(f.astype(jnp.float32) - jax.lax.stop_gradient(r).astype(jnp.float32)))
  return total


def vgg_loss_img2img(fake, real, vgg_params):
  """pix2pixHD's VGG loss, without lambda_feat: sum_i w_i mean |phi_i(fake) - phi_i(real)|.

  phi_i = relu1_1, relu2_1, relu3_1, relu4_1 of the frozen VGG19, w_i = 1/32, 1/16, 1/8, 1/4.
  Deviations from pix2pixHD, all from reusing the project's `VGG19Features`: relu5_1 (weight
  1) is absent (the module stops at relu4_4); images are in [0, 1] and ImageNet-normalised
  (pix2pixHD feeds [-1, 1] unnormalised); pooling is 2x2 average (seg2vid's VGG), not max.
  Under jit the unused relu4_2 ... relu4_4 are dead code and are not computed.

  Args:
    fake, real: (N, H, W, 3) images in [0, 1]; `real` is a constant.
    vgg_params: the VGG19 'params' tree (`seg2vid_jax.vgg_weights.load`), frozen.
  """
  vgg = VGG19Features()
  params = {'params': jax.lax.stop_gradient(vgg_params)}
  phi_fake = vgg.apply(params, fake)
  phi_real = vgg.apply(params, jax.lax.stop_gradient(real))
  return sum(w * jnp.mean(jnp.abs(phi_fake[i].astype(jnp.float32) -
                                  phi_real[i].astype(jnp.float32)))
             for i, w in zip(VGG_LAYERS, VGG_LAYER_WEIGHTS))


def generator_objective(fake_outputs, real_outputs, fake_image, real_image, vgg_params=None,
                        weights: Optional[Mapping[str, float]] = None):
  """The generator's terms 'gan', 'feat', 'vgg' (unweighted) and their weighted 'total'.

  Args:
    fake_outputs: `MultiscaleDiscriminator` outputs on the generated image (D frozen).
    real_outputs: its outputs on the real image (used as constants).
    fake_image, real_image: (B, H, W, 3) in [0, 1].
    vgg_params: frozen VGG19 params, or None to turn the VGG term off (it is then 0).
    weights: per-term weights; defaults to pix2pixHD's `WEIGHTS`.
  """
  weights = dict(WEIGHTS if weights is None else weights)
  num_d, n_layers = len(fake_outputs), len(fake_outputs[0]) - 2
  terms = dict(
      gan=lsgan_g_loss(fake_outputs),
      feat=feature_matching_loss(real_outputs, fake_outputs, num_d, n_layers),
      vgg=(vgg_loss_img2img(fake_image, real_image, vgg_params) if vgg_params is not None
           else jnp.zeros((), jnp.float32)))
  terms['total'] = sum(weights[name] * value for name, value in terms.items())
  return terms


def discriminator_objective(real_outputs, fake_outputs):
  """The discriminator's halves 'real' = sum_s mean((D(real) - 1)^2), 'fake' = sum_s
  mean(D(fake)^2), and 'total' = (real + fake) / 2 = `lsgan_d_loss`."""
  terms = dict(real=_least_squares(real_outputs, 1.0), fake=_least_squares(fake_outputs, 0.0))
  terms['total'] = 0.5 * (terms['real'] + terms['fake'])
  return terms


def target_image(batch):
  """The image stage 1 learns to produce: batch['image'], or else the first video frame."""
  return batch['image'] if 'image' in batch else batch['video'][:, 0]


def gan_losses(gen_params, disc_params, gen, disc, batch, vgg_params=None,
               weights: Optional[Mapping[str, float]] = None):
  """Both objectives in one pass; returns (L_G + L_D, aux).

  L_G sees stop_gradient(disc_params) and L_D sees stop_gradient(fake), so the gradient of the
  sum with respect to (gen_params, disc_params) is (dL_G/dgen, dL_D/ddisc): one backward pass
  gives both networks' updates. Three discriminator passes, as pix2pixHD: real (shared: the
  real half of L_D, and constant targets for feature matching), fake with D frozen (for G),
  and the constant fake (for D).

  Args:
    gen_params, disc_params: the 'params' trees of `gen` (`GlobalGenerator`) and `disc`
      (`MultiscaleDiscriminator`).
    batch: 'label_onehot' (B, H, W, C); the target 'image' (B, H, W, 3) in [0, 1] or else
      'video' (B, T, H, W, 3), whose first frame is the target; 'instance_ids' (B, H, W) if
      gen.use_instance_edges.
    vgg_params: frozen VGG19 params or None (no VGG term).
    weights: generator term weights (default `WEIGHTS`).

  Returns:
    (L_G + L_D, {'generator': generator terms, 'discriminator': discriminator terms,
    'fake': the generated images}).
  """
  ids = batch.get('instance_ids') if gen.use_instance_edges else None
  cond = conditioning(batch['label_onehot'], ids)
  real = target_image(batch)
  fake = gen.apply({'params': gen_params}, batch['label_onehot'], ids)
  apply_d = lambda params, image: disc.apply({'params': params}, cond, image)
  real_outputs = apply_d(disc_params, real)
  g_terms = generator_objective(apply_d(jax.lax.stop_gradient(disc_params), fake),
                                jax.lax.stop_gradient(real_outputs), fake, real,
                                vgg_params, weights)
  d_terms = discriminator_objective(real_outputs,
                                    apply_d(disc_params, jax.lax.stop_gradient(fake)))
  return (g_terms['total'] + d_terms['total'],
          dict(generator=g_terms, discriminator=d_terms, fake=fake))


def generator_loss(gen_params, disc_params, gen, disc, batch, vgg_params=None,
                   weights: Optional[Mapping[str, float]] = None):
  """(L_G, generator terms); its gradient with respect to disc_params is zero. Under jit the
  discriminator-only pass of `gan_losses` is dead code."""
  _, aux = gan_losses(gen_params, disc_params, gen, disc, batch, vgg_params, weights)
  return aux['generator']['total'], aux['generator']


def discriminator_loss(gen_params, disc_params, gen, disc, batch):
  """(L_D, discriminator terms); its gradient with respect to gen_params is zero."""
  _, aux = gan_losses(gen_params, disc_params, gen, disc, batch)
  return aux['discriminator']['total'], aux['discriminator']


def optimizer(learning_rate=LEARNING_RATE) -> optax.GradientTransformation:
  """pix2pixHD's Adam (beta1 0.5, beta2 0.999); use one instance per network. (pix2pixHD also
  decays the rate linearly to 0 over its last 100 epochs: pass an optax schedule.)"""
  return optax.adam(learning_rate, b1=BETA1, b2=BETA2)
