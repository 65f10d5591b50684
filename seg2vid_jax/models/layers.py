"""Building blocks of the published seg2vid model, in NHWC.

Module names follow the PyTorch state_dict of the original (``main_0`` for ``main.0``), so that
`seg2vid_jax.convert` maps a published checkpoint onto these parameters by name alone.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from seg2vid_jax.ops import conv as conv_ops

LEAK = 0.2


def leaky_relu(x):
  """LeakyReLU with the slope 0.2 used throughout seg2vid."""
  return nn.leaky_relu(x, LEAK)


def at_least_f32(x):
  """`x` in float32, or wider if it already is (outputs and statistics stay >= fp32 in bf16)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def upsample2x(x):
  """Bilinear x2 upsampling of (N, H, W, C), as PyTorch ``Upsample(mode='bilinear')``.

  align_corners=False with edge clamping: output row 2i is 0.25 x[i-1] + 0.75 x[i], row 2i+1
  is 0.75 x[i] + 0.25 x[i+1]. Written as two shifted blends rather than a generic resize,
  which is exact and cheaper.
  """
  def along(x, axis):
    n = x.shape[axis]
    prev = jnp.concatenate([jax.lax.slice_in_dim(x, 0, 1, axis=axis),
                            jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis),
                           jax.lax.slice_in_dim(x, n - 1, n, axis=axis)], axis=axis)
    even = 0.25 * prev + 0.75 * x
    odd = 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis=axis + 1)
    shape = list(x.shape)
    shape[axis] = 2 * n
    return out.reshape(shape)
  return along(along(x, 1), 2)


class BatchNorm(nn.Module):
  """BatchNorm with PyTorch's semantics, which the published numbers depend on.

  Running statistics follow ``running = (1 - momentum) running + momentum batch`` with the
  *unbiased* batch variance (flax's BatchNorm uses the biased one, which differs a lot on the
  1x1 maps of the refinement bottleneck). ``groups`` > 1 normalises each of ``groups``
  consecutive slices of the batch with its own statistics and updates the running statistics
  once per slice, in order: the original runs the refinement network once per predicted frame.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  groups: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    if train:
      xg = at_least_f32(x.reshape((self.groups, -1) + x.shape[1:]))
      axes = tuple(range(1, xg.ndim - 1))
      mean = jnp.mean(xg, axis=axes, keepdims=True)
      var = jnp.mean(jnp.square(xg - mean), axis=axes, keepdims=True)
      y = ((xg - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
      if not self.is_initializing():
        n = xg.size // (self.groups * c)
        unbiased = var.reshape(self.groups, c) * (n / max(n - 1, 1))
        m_run, v_run = ra_mean.value, ra_var.value
        for g in range(self.groups):
          m_run = (1 - self.momentum) * m_run + self.momentum * mean.reshape(self.groups, c)[g]
          v_run = (1 - self.momentum) * v_run + self.momentum * unbiased[g]
        ra_mean.value, ra_var.value = m_run, v_run
    else:
      y = (at_least_f32(x) - ra_mean.value) * jax.lax.rsqrt(ra_var.value + self.epsilon)
    y = y * scale + bias
    return y.astype(self.dtype or x.dtype)


def conv(features, kernel, stride=1, pad=0, use_bias=True, name=None, dtype=None):
  """A 2-D (or 3-D, with a 3-tuple kernel) convolution with PyTorch's explicit padding."""
  kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
  return nn.Conv(features, kernel, strides=stride, padding=[(pad, pad)] * len(kernel),
                 use_bias=use_bias, name=name, dtype=dtype,
                 conv_general_dilated=conv_ops.conv_general_dilated)


class ConvBase(nn.Module):
  """``convbase``: Conv (with bias) -> LeakyReLU(0.2)."""
  features: int
  kernel: int
  stride: int
  pad: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    return leaky_relu(conv(self.features, self.kernel, self.stride, self.pad, True, 'main_0',
                           self.dtype)(x))


class ConvBlock(nn.Module):
  """``convblock``: Conv (no bias) -> BatchNorm -> LeakyReLU(0.2)."""
  features: int
  kernel: int
  stride: int
  pad: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(self.features, self.kernel, self.stride, self.pad, False, 'main_0', self.dtype)(x)
    return leaky_relu(BatchNorm(name='main_1', dtype=self.dtype)(x, train))


def upsample2x_nearest(x):
  """Nearest-neighbour x2 upsampling of (N, H, W, C), as PyTorch ``Upsample(scale_factor=2)``."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class UpConv(nn.Module):
  """``upconv``: (Conv -> BN -> LReLU) to 2·features, then to features, then x2 upsampling:
  bilinear in the label-map models, nearest in the image-only ("genmask") model, whose
  ``nn.Upsample(scale_factor=2)`` keeps PyTorch's default mode."""
  features: int
  kernel: int
  pad: int
  dtype: Any = None
  upsampling: str = 'bilinear'

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(2 * self.features, self.kernel, 1, self.pad, True, 'main_0', self.dtype)(x)
    x = leaky_relu(BatchNorm(name='main_1', dtype=self.dtype)(x, train))
    x = conv(self.features, self.kernel, 1, self.pad, True, 'main_3', self.dtype)(x)
    x = leaky_relu(BatchNorm(name='main_4', dtype=self.dtype)(x, train))
    if self.upsampling not in ('bilinear', 'nearest'):
      raise ValueError(f"upsampling must be 'bilinear' or 'nearest', not {self.upsampling!r}")
    return upsample2x(x) if self.upsampling == 'bilinear' else upsample2x_nearest(x)


class GateConv3d(nn.Module):
  """``gateconv3d``: Conv3d 3x3x3 over (time, H, W) -> BatchNorm3d -> LeakyReLU(0.2).

  Input (B, K, H, W, C): mixes information between the K predicted frames of a clip.
  """
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(x.shape[-1], (3, 3, 3), 1, 1, True, 'conv', self.dtype)(x)
    return leaky_relu(BatchNorm(name='bn', dtype=self.dtype)(x, train))


class VGGLayer(nn.Module):
  """``vgg_layer``: Conv 3x3 pad 1 (bias) -> BatchNorm -> LeakyReLU(0.2)."""
  features: int
  bn_groups: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = conv(self.features, 3, 1, 1, True, 'main_0', self.dtype)(x)
    return leaky_relu(BatchNorm(groups=self.bn_groups, name='main_1', dtype=self.dtype)(x, train))


def max_pool2(x):
  """2x2 max pooling, stride 2."""
  return nn.max_pool(x, (2, 2), (2, 2))


def avg_pool2(x):
  """2x2 average pooling, stride 2."""
  return nn.avg_pool(x, (2, 2), (2, 2))


def chw_rows(x, row):
  """Flattens (B, H, W, C) in PyTorch's C,H,W order into rows of `row`: (B, n, row)."""
  b = x.shape[0]
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(b, -1, row)


def rows_to_nhwc(rows, shape_chw: Sequence[int]):
  """Inverse of `chw_rows`: (B, n, row) viewed as (B, C, H, W), returned as (B, H, W, C)."""
  b = rows.shape[0]
  return jnp.transpose(rows.reshape((b,) + tuple(shape_chw)), (0, 2, 3, 1))
