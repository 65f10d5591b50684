"""Stage 1 of seg2vid: label map -> first frame, with pix2pixHD's networks (Wang et al. 2018).

The seg2vid authors made the first frame with NVIDIA's pix2pixHD; this module rebuilds its
global generator and multi-scale PatchGAN discriminator in Flax Linen, NHWC, with the
published defaults (``--norm instance``, no local enhancer, no feature encoder).

Conventions that differ from pix2pixHD's code, and why:
  * Images are in [0, 1] throughout this project, so the generator maps its tanh output y
    to (y + 1) / 2, and the discriminator sees real and generated images in [0, 1] (pix2pixHD
    feeds it [-1, 1]; an affine change of the input the first convolution absorbs).
  * Kernels are initialised N(0, 0.02) as pix2pixHD's ``weights_init``; biases start at zero
    (PyTorch's default uniform initialisation is not reproduced).

Module names follow the PyTorch state_dict (``model_1`` for ``model.1``; a discriminator
scale's ``model{j}_0`` for ``scale{i}_layer{j}.0``), so a pix2pixHD checkpoint can be mapped
by name.
"""

from typing import List, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seg2vid_jax.ops import conv as conv_ops

LEAK = 0.2
EPSILON = 1e-5
# pix2pixHD's NLayerDiscriminator: 4x4 kernels padded by ceil((4 - 1) / 2) = 2.
D_KERNEL = 4
D_PAD = 2
D_MAX_WIDTH = 512
# pix2pixHD's weights_init: Conv* weights ~ N(0, 0.02).
KERNEL_INIT = nn.initializers.normal(0.02)


def instance_edges(instance_ids):
  """pix2pixHD's instance boundary map: (B, H, W) integer ids -> (B, H, W, 1) float32.

  A pixel is 1 where its id differs from that of its right, left, upper or lower neighbour,
  else 0 (pix2pixHD's ``get_edges``). It separates touching objects of the same class, which
  the one-hot label map cannot.
  """
  t = instance_ids
  dx = t[:, :, 1:] != t[:, :, :-1]  # (B, H, W - 1): pixel (i, j + 1) vs (i, j).
  dy = t[:, 1:, :] != t[:, :-1, :]  # (B, H - 1, W).
  pad_w = lambda d, lo, hi: jnp.pad(d, ((0, 0), (0, 0), (lo, hi)))
  pad_h = lambda d, lo, hi: jnp.pad(d, ((0, 0), (lo, hi), (0, 0)))
  edge = pad_w(dx, 1, 0) | pad_w(dx, 0, 1) | pad_h(dy, 1, 0) | pad_h(dy, 0, 1)
  return edge[..., None].astype(jnp.float32)


def conditioning(label_onehot, instance_ids=None):
  """The conditioning input of both networks: the one-hot label map (B, H, W, C), with the
  instance boundary map appended as one more channel when `instance_ids` is given."""
  if instance_ids is None:
    return label_onehot
  edges = instance_edges(instance_ids).astype(label_onehot.dtype)
  return jnp.concatenate([label_onehot, edges], axis=-1)


def instance_norm(x, epsilon: float = EPSILON):
  """``InstanceNorm2d(affine=False)``: each sample's channels normalised over H, W.

  Biased variance, as PyTorch; no learned scale or shift, and no running statistics (pix2pixHD
  evaluates in train mode too). Statistics in float32.
  """
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=(1, 2), keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + epsilon)).astype(x.dtype)


def reflection_pad(x, pad: int):
  """``ReflectionPad2d(pad)`` over H and W of (N, H, W, C): mirrors without repeating the
  edge pixel (numpy's 'reflect'); pix2pixHD pads the generator this way to avoid border
  artefacts."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


def downsample(x):
  """``AvgPool2d(3, stride=2, padding=1, count_include_pad=False)``: the input of the next
  (coarser) discriminator scale. Border windows average only their in-image pixels."""
  return nn.avg_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), count_include_pad=False)


def _conv(features, kernel, stride=1, padding=0, name=None):
  return nn.Conv(features, (kernel, kernel), (stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 kernel_init=KERNEL_INIT, name=name,
                 conv_general_dilated=conv_ops.conv_general_dilated)


def upconv(features, name=None):
  """``ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)``: exact x2 upsampling.

  The stride-dilated input is padded by k-1-p = 1 before and k-1-p+output_padding = 2 after,
  so H -> 2H; transpose_kernel=True gives PyTorch's (gradient-of-convolution) semantics, with
  the kernel stored (3, 3, out, in), i.e. PyTorch's (in, out, 3, 3) weight transposed.
  """
  return nn.ConvTranspose(features, (3, 3), (2, 2), padding=((1, 2), (1, 2)),
                          transpose_kernel=True, kernel_init=KERNEL_INIT, name=name)


class ResnetBlock(nn.Module):
  """x + [ReflectionPad1, Conv3x3, IN, ReLU, ReflectionPad1, Conv3x3, IN](x), width kept."""

  @nn.compact
  def __call__(self, x):
    width = x.shape[-1]
    y = _conv(width, 3, name='conv_block_1')(reflection_pad(x, 1))
    y = nn.relu(instance_norm(y))
    y = _conv(width, 3, name='conv_block_5')(reflection_pad(y, 1))
    return x + instance_norm(y)


class GlobalGenerator(nn.Module):
  """pix2pixHD's global generator: label map (+ instance edges) -> image in [0, 1].

  c7s1-ngf, `n_downsampling` stride-2 3x3 convolutions doubling the width, `n_blocks`
  residual blocks, `n_downsampling` exact-x2 transposed convolutions halving it, c7s1-3 and
  tanh, mapped to [0, 1] by (y + 1) / 2. Every hidden convolution is followed by instance
  norm and ReLU. Published (Cityscapes): ngf 64, 4 downsamplings (widths 64 ... 1024),
  9 blocks.

  Attributes:
    output_channels: channels of the generated image.
    ngf: width of the first convolution.
    n_downsampling: number of stride-2 stages; H and W must be multiples of 2**n_downsampling.
    n_blocks: residual blocks at the lowest resolution.
    use_instance_edges: append `instance_edges(instance_ids)` to the input (pix2pixHD's
      default unless ``--no_instance``); when False, `instance_ids` is ignored.
  """
  output_channels: int = 3
  ngf: int = 64
  n_downsampling: int = 4
  n_blocks: int = 9
  use_instance_edges: bool = False

  @nn.compact
  def __call__(self, label_onehot, instance_ids=None):
    """label_onehot (B, H, W, C), instance_ids (B, H, W) or None -> (B, H, W, out) in [0, 1]."""
    if self.use_instance_edges and instance_ids is None:
      raise ValueError('use_instance_edges=True needs instance_ids')
    factor = 2 ** self.n_downsampling
    if label_onehot.shape[1] % factor or label_onehot.shape[2] % factor:
      raise ValueError(f'H, W = {label_onehot.shape[1:3]} must be multiples of {factor}')
    x = conditioning(label_onehot, instance_ids if self.use_instance_edges else None)
    # Names are the indices in pix2pixHD's nn.Sequential: pad, conv, norm, relu, ...
    x = _conv(self.ngf, 7, name='model_1')(reflection_pad(x, 3))
    x = nn.relu(instance_norm(x))
    index = 4
    width = self.ngf
    for _ in range(self.n_downsampling):
      width *= 2
      x = nn.relu(instance_norm(_conv(width, 3, 2, 1, name=f'model_{index}')(x)))
      index += 3
    for _ in range(self.n_blocks):
      x = ResnetBlock(name=f'model_{index}')(x)
      index += 1
    for _ in range(self.n_downsampling):
      width //= 2
      x = nn.relu(instance_norm(upconv(width, name=f'model_{index}')(x)))
      index += 3
    x = _conv(self.output_channels, 7, name=f'model_{index + 1}')(reflection_pad(x, 3))
    return (jnp.tanh(x) + 1.0) / 2.0


class NLayerDiscriminator(nn.Module):
  """One PatchGAN of pix2pixHD: 4x4 convolutions padded by 2, LeakyReLU(0.2).

  C(ndf, s2) without norm; n_layers - 1 of C(width x2 up to 512, s2) + IN; C(width x2 up to
  512, s1) + IN; C(1, s1). Returns the n_layers + 2 block outputs (``getIntermFeat``): the
  first n_layers + 1 are the features of the feature-matching loss, the last the per-patch
  prediction (no sigmoid: LSGAN).
  """
  ndf: int = 64
  n_layers: int = 3

  @nn.compact
  def __call__(self, x) -> List[jnp.ndarray]:
    conv = lambda w, s, j: _conv(w, D_KERNEL, s, D_PAD, name=f'model{j}_0')
    lrelu = lambda y: nn.leaky_relu(y, LEAK)
    x = lrelu(conv(self.ndf, 2, 0)(x))
    features = [x]
    width = self.ndf
    for j in range(1, self.n_layers):
      width = min(width * 2, D_MAX_WIDTH)
      x = lrelu(instance_norm(conv(width, 2, j)(x)))
      features.append(x)
    width = min(width * 2, D_MAX_WIDTH)
    x = lrelu(instance_norm(conv(width, 1, self.n_layers)(x)))
    features.append(x)
    features.append(conv(1, 1, self.n_layers + 1)(x))
    return features


class MultiscaleDiscriminator(nn.Module):
  """`num_D` PatchGANs on concat(conditioning, image) at successively halved resolutions.

  The i-th result comes from the input average-pooled i times (`downsample`); coarse scales
  judge global layout, the full-resolution one fine texture. Published: 3 scales, ndf 64,
  n_layers 3. As in pix2pixHD, result i is computed by the module named
  ``scale{num_D - 1 - i}``.
  """
  num_D: int = 3  # pylint: disable=invalid-name
  ndf: int = 64
  n_layers: int = 3

  @nn.compact
  def __call__(self, cond, image) -> List[List[jnp.ndarray]]:
    """cond (B, H, W, C), image (B, H, W, 3) -> per scale, its features, prediction last."""
    x = jnp.concatenate([cond, image.astype(cond.dtype)], axis=-1)
    results = []
    for i in range(self.num_D):
      results.append(NLayerDiscriminator(self.ndf, self.n_layers,
                                         name=f'scale{self.num_D - 1 - i}')(x))
      if i != self.num_D - 1:
        x = downsample(x)
    return results


def discriminator_output_size(size: int, n_layers: int) -> int:
  """Spatial size of a PatchGAN's prediction for an input of `size` pixels: n_layers
  stride-2 then two stride-1 4x4 convolutions padded by 2 (each s1 one adds a pixel)."""
  for _ in range(n_layers):
    size = (size + 2 * D_PAD - D_KERNEL) // 2 + 1
  return size + 2


def example_inputs(num_classes: int = 20, image_size: Sequence[int] = (128, 256),
                   batch: int = 1, use_instance_edges: bool = False):
  """Zero inputs of the right shapes: (label_onehot, instance_ids or None, image)."""
  h, w = image_size
  ids = jnp.zeros((batch, h, w), jnp.int32) if use_instance_edges else None
  return (jnp.zeros((batch, h, w, num_classes), jnp.float32), ids,
          jnp.zeros((batch, h, w, 3), jnp.float32))


def init_variables(gen: GlobalGenerator, disc: MultiscaleDiscriminator, rng,
                   num_classes: int = 20, image_size: Sequence[int] = (128, 256),
                   batch: int = 1):
  """Initial ({'params'} of gen, {'params'} of disc), under jit.

  Uses the non-partitionable threefry generator, which XLA:CPU compiles much faster (see
  `seg2vid_jax.models.img2vid.init_variables`).
  """
  labels, ids, image = example_inputs(num_classes, image_size, batch, gen.use_instance_edges)
  cond = conditioning(labels, ids)
  g_rng, d_rng = jax.random.split(rng)
  with jax.threefry_partitionable(False):
    gen_vars = jax.jit(gen.init)(g_rng, labels, ids)
    disc_vars = jax.jit(disc.init)(d_rng, cond, image)
  return gen_vars, disc_vars
