"""The Img2Vid network of seg2vid: first frame + label map + z -> K future frames.

A conditional VAE predicts, for each future frame k, a forward flow f_k, a backward flow b_k
and occlusion masks; the first frame is backward-warped by the masked forward flow and a U-Net
refines the result. `Img2Vid` is the whole forward pass; its submodules carry the names of the
published PyTorch model (see `seg2vid_jax.convert`). Widths, depths and the image size come
from the config: the defaults are the published model (MODEL.md), and smaller settings give a
configuration that trains on a CPU.
"""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from seg2vid_jax.models import layers
from seg2vid_jax.ops import warp


class ImageEncoder(nn.Module):
  """``encoder``: concat(I0, labels), or I0 alone (image-only model) -> skips e1 (H/2), e2 (H/4), e3 (H/8) and codex (H/16)."""
  widths: Sequence[int] = (32, 64, 128, 256)
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    e1 = layers.ConvBase(self.widths[0], 4, 2, 1, self.dtype, name='econv1')(x, train)
    e2 = layers.ConvBlock(self.widths[1], 4, 2, 1, self.dtype, name='econv2')(e1, train)
    e3 = layers.ConvBlock(self.widths[2], 4, 2, 1, self.dtype, name='econv3')(e2, train)
    codex = layers.ConvBlock(self.widths[3], 4, 2, 1, self.dtype, name='econv4')(e3, train)
    return e1, e2, e3, codex


class MotionNet(nn.Module):
  """``motion_net``: the cVAE posterior Q(z | clip, labels), training only.

  Input concat(I0, I_1 - I0, ..., I_K - I0, labels) at full size; four stride-2 convolutions
  bring it to (H/16, W/16, latent_channels), which is cut in PyTorch's C,H,W order into rows of
  `z_dim` (n rows per clip); fc1 and fc2 give mu and logvar per row (`out_dim` wide).
  """
  widths: Sequence[int] = (32, 64, 64, 128, 128)
  latent_channels: int = 64
  z_dim: int = 1024
  out_dim: int = 1024
  logvar_bias_init: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    w = self.widths
    c = lambda f, k, s, p, name: layers.conv(f, k, s, p, False, name, self.dtype)
    bn = lambda name: layers.BatchNorm(name=name, dtype=self.dtype)
    x = layers.leaky_relu(c(w[0], 4, 2, 1, 'main_0')(x))
    x = layers.leaky_relu(bn('main_3')(c(w[1], 4, 2, 1, 'main_2')(x), train))
    x = layers.leaky_relu(bn('main_6')(c(w[2], 3, 1, 1, 'main_5')(x), train))
    x = layers.leaky_relu(bn('main_9')(c(w[3], 4, 2, 1, 'main_8')(x), train))
    x = layers.leaky_relu(bn('main_12')(c(w[4], 3, 1, 1, 'main_11')(x), train))
    x = c(self.latent_channels, 4, 2, 1, 'main_14')(x)
    rows = layers.at_least_f32(layers.chw_rows(x, self.z_dim))
    mu = nn.Dense(self.out_dim, name='fc1')(rows)
    logvar = nn.Dense(self.out_dim, bias_init=nn.initializers.constant(self.logvar_bias_init),
                      name='fc2')(rows)
    return mu, logvar


class FlowDecoder(nn.Module):
  """``flow_decoder``: (codex, motion code of frame k) -> decoder feature F_k at H/2.

  All K frames of a clip run as one batch (B·K); two 3-D convolutions mix the frames of a
  clip at H/4 and H/2. Skips from the image encoder are concatenated after each upsampling.
  """
  widths: Sequence[int] = (32, 64, 128, 256)
  num_frames: int = 4
  dtype: Any = None
  upsampling: str = 'bilinear'

  @nn.compact
  def __call__(self, e1, e2, e3, z, train: bool):
    k, w = self.num_frames, self.widths
    tile = lambda skip: jnp.repeat(skip, k, axis=0)  # (B, ...) -> (B·K, ...), clip-major.
    as_clips = lambda x: x.reshape((-1, k) + x.shape[1:])
    as_frames = lambda x: x.reshape((-1,) + x.shape[2:])
    d1 = layers.ConvBlock(w[3], 3, 1, 1, self.dtype, name='dconv1')(z, train)
    up = lambda f, name: layers.UpConv(f, 3, 1, self.dtype, self.upsampling, name=name)
    d2 = up(w[2], 'dconv2')(d1, train)
    d2 = jnp.concatenate([d2, tile(e3)], axis=-1)
    d3 = up(w[1], 'dconv3')(d2, train)
    d3 = as_frames(layers.GateConv3d(self.dtype, name='gateconv1')(as_clips(d3), train))
    d3 = jnp.concatenate([d3, tile(e2)], axis=-1)
    d4 = up(w[0], 'dconv4')(d3, train)
    d4 = as_frames(layers.GateConv3d(self.dtype, name='gateconv2')(as_clips(d4), train))
    return jnp.concatenate([d4, tile(e1)], axis=-1)


class Head(nn.Module):
  """``getflow`` / ``get_occlusion_mask``: upconv(5x5) to full size, then Conv 5x5 -> 2."""
  width: int = 16
  dtype: Any = None
  upsampling: str = 'bilinear'

  @nn.compact
  def __call__(self, x, train: bool):
    x = layers.UpConv(self.width, 5, 2, self.dtype, self.upsampling, name='main_0')(x, train)
    return layers.at_least_f32(layers.conv(2, 5, 1, 2, True, 'main_1', self.dtype)(x))


def maybe_remat(level_fn, remat: bool):
  """`level_fn(module, x)`, rematerialised as one block if `remat` (`nn.remat`).

  The refinement U-Net is rematerialised level by level: the backward pass keeps each
  level's input only and recomputes the level's layers when it reaches them. BatchNorm and the
  activation are fused into their consumers, so a plain layer already keeps about one tensor;
  a block of layers is what can save memory, and the whole U-Net as one block cannot (its
  backward needs all of its recomputed activations at once). XLA:CPU merges the recomputation
  back into the forward pass and saves nothing (measured in docs/PERF.md).
  """
  return nn.remat(level_fn) if remat else level_fn


class RefineEncoder(nn.Module):
  """``refine_net.image_encoder`` (vgg_128): VGG-style levels with skips, then a 4x4 bottleneck.

  Level i has depths[i] vgg_layers of widths[i]; a 2x2 max pool follows each level; c6 is a 4x4
  valid convolution to `bottleneck` channels, BN and tanh (needs H / 2**levels >= 4).
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  depths: Sequence[int] = (2, 2, 3, 3, 3)
  bottleneck: int = 1024
  bn_groups: int = 1
  remat: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    skips = []
    for level, (width, depth) in enumerate(zip(self.widths, self.depths)):
      def run_level(module, x, level=level, width=width, depth=depth):
        if level:
          x = layers.max_pool2(x)
        for j in range(depth):
          x = layers.VGGLayer(width, module.bn_groups, module.dtype,
                              name=f'c{level + 1}_{j}')(x, train)
        return x
      x = maybe_remat(run_level, self.remat)(self, x)
      skips.append(x)
    x = layers.max_pool2(x)
    x = layers.conv(self.bottleneck, 4, 1, 0, True, f'c{len(self.widths) + 1}_0', self.dtype)(x)
    x = layers.BatchNorm(groups=self.bn_groups, name=f'c{len(self.widths) + 1}_1',
                         dtype=self.dtype)(x, train)
    return jnp.tanh(x), skips


class RefineDecoder(nn.Module):
  """``refine_net.image_decoder``: mirror of `RefineEncoder`, ending in a sigmoid image.

  upc1 is a 4x4 transposed convolution (stride 1, no padding), written as the equivalent
  convolution with padding 3 (`convert` flips the published kernels accordingly); each
  following level upsamples x2, concatenates its skip and applies vgg_layers, the last of which
  narrows to the next level's width; upc{L+1} ends in a 3x3 transposed convolution (padding 1,
  again as a convolution) to the image channels.
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  depths: Sequence[int] = (2, 2, 3, 3, 3)
  channels: int = 3
  bn_groups: int = 1
  remat: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, code, skips, train: bool, base=None):
    levels = len(self.widths)
    bn = lambda name: layers.BatchNorm(groups=self.bn_groups, name=name, dtype=self.dtype)
    x = layers.conv(self.widths[-1], 4, 1, 3, True, 'upc1_0', self.dtype)(code)
    x = layers.leaky_relu(bn('upc1_1')(x, train))
    for n, level in enumerate(range(levels - 1, 0, -1)):
      def run_level(module, x, skip, n=n, level=level):
        x = jnp.concatenate([layers.upsample2x(x), skip], axis=-1)
        for j in range(module.depths[level]):
          last = j == module.depths[level] - 1
          width = module.widths[level - 1] if last else module.widths[level]
          x = layers.VGGLayer(width, module.bn_groups, module.dtype,
                              name=f'upc{n + 2}_{j}')(x, train)
        return x
      x = maybe_remat(run_level, self.remat)(self, x, skips[level])
    x = jnp.concatenate([layers.upsample2x(x), skips[0]], axis=-1)
    x = layers.VGGLayer(self.widths[0], self.bn_groups, self.dtype,
                        name=f'upc{levels + 1}_0')(x, train)
    x = layers.at_least_f32(
        layers.conv(self.channels, 3, 1, 1, True, f'upc{levels + 1}_1', self.dtype)(x))
    if base is not None:  # Residual refinement: a correction of base's logits, from identity.
      base = jnp.clip(base.astype(x.dtype), 1e-3, 1.0 - 1e-3)
      x = jax.scipy.special.logit(base) + self.param('residual_gain', nn.initializers.zeros,
                                                     ()) * x
    return nn.sigmoid(x)


class RefineNet(nn.Module):
  """``refine_net``: U-Net that turns a masked warped frame (plus noise) into the prediction.

  The original runs it once per predicted frame, so in training BatchNorm statistics are per
  frame: pass the frames frame-major with `bn_groups` = K to reproduce that in one batch.
  """
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  depths: Sequence[int] = (2, 2, 3, 3, 3)
  bottleneck: int = 1024
  channels: int = 3
  bn_groups: int = 1
  remat: bool = False
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool, base=None):
    """x: the U-Net's input; base: None as published, or the image whose logits the output
    corrects (residual refinement)."""
    code, skips = RefineEncoder(self.widths, self.depths, self.bottleneck, self.bn_groups,
                                self.remat, self.dtype, name='image_encoder')(x, train)
    return RefineDecoder(self.widths, self.depths, self.channels, self.bn_groups, self.remat,
                         self.dtype, name='image_decoder')(code, skips, train, base)


class Img2Vid(nn.Module):
  """The whole seg2vid Img2Vid forward pass.

  Call ``apply(variables, video, label_onehot, noise, z=None, train=False)``:
    video: (B, T, H, W, C) in [0, 1]; frame 0 is I0. With T = K + 1 the motion encoder runs
      and `mu`, `logvar` are returned; with T = 1 (generation) it is skipped.
    label_onehot: (B, H, W, num_classes); None for the image-only model (num_classes = 0, the
      authors' "genmask" model of KTH and UCF-101: no label input anywhere).
    noise: (B, H, W, C), the refinement noise n, shared over the K frames; None draws it from
      the 'noise' rng.
    z: (B, n, z_dim), or None: then z = mu + exp(logvar / 2)·eps in training (posterior) and
      z ~ N(0, I) otherwise (prior), both from the 'latent' rng.
    posterior_mean: with z None and a whole clip, z = mu (the clip's reconstruction, which
      evaluation reports; the original's test mode draws z from the prior instead).
  Returns a dict: warped, refined (B, K, H, W, C); flow, flow_back (B, K, H, W, 2), normalised
  units, x first; mask_fw, mask_bw (B, K, H, W); mu, logvar (B, n, z_dim) or None; z.
  """
  image_size: Tuple[int, int] = (128, 256)
  num_predicted_frames: int = 4
  num_classes: int = 20
  channels: int = 3
  two_path: bool = False
  num_bg_classes: int = 11
  # Two-path: widths (background, foreground) of each latent row's mu/logvar; None splits z_dim
  # in half, as the authors' training script (their released two-path checkpoint: 128/896).
  latent_split: Optional[Tuple[int, int]] = None
  # x2 upsampling of the flow decoder's and heads' upconv layers: 'bilinear' (MODEL.md), or
  # 'nearest' as in the image-only model (the original's Upsample without a mode).
  upconv_upsampling: str = 'bilinear'
  # Initial bias of the posterior's logvar layer (fc2); 0 as Flax's default. Negative starts
  # the posterior nearly deterministic (z ~ mu), so the decoder sees the motion code clearly
  # before the KL term (a slow pull under Adam) widens it (docs/ABLATION.md).
  logvar_bias_init: float = 0.0
  # The flow heads' outputs in pixels (converted to the warp's normalised units, 2/(W-1) per
  # pixel in x, 2/(H-1) in y) instead of normalised units as published: the same model, but
  # Adam's steps and the initial flows are a pixel's size, not W/2 pixels (docs/ABLATION.md).
  flow_in_pixels: bool = False
  # The refinement net corrects the warped frame (sigmoid(logit(warped) + g·out), g a learned
  # gain starting at 0, so the prediction starts as the warp) instead of painting the frame
  # from scratch through a sigmoid as published (docs/ABLATION.md item 22: in the demo it keeps
  # more of the warp's fine detail, and gains no PSNR).
  refine_residual: bool = False
  encoder_widths: Sequence[int] = (32, 64, 128, 256)
  motion_widths: Sequence[int] = (32, 64, 64, 128, 128)
  latent_channels: int = 64
  z_dim: int = 1024
  code_channels: int = 16
  head_width: int = 16
  refine_widths: Sequence[int] = (64, 128, 256, 512, 512)
  refine_depths: Sequence[int] = (2, 2, 3, 3, 3)
  refine_bottleneck: int = 1024
  remat_refine: bool = False
  dtype: Any = None

  @property
  def latent_shape(self):
    """(n, z_dim): the rows of z per clip, n = (H/16)(W/16)·latent_channels / z_dim."""
    h, w = self.image_size
    if h % 16 or w % 16 or (h // 16) * (w // 16) * self.latent_channels % self.z_dim:
      raise ValueError(f'image_size {self.image_size} must be a multiple of 16 whose latent map '
                       f'(H/16)(W/16)·{self.latent_channels} divides into rows of {self.z_dim}')
    return (h // 16) * (w // 16) * self.latent_channels // self.z_dim, self.z_dim

  @property
  def path_widths(self):
    """{motion encoder name: width of its part of each latent row}."""
    if not self.two_path:
      return {'motion_net': self.z_dim}
    bg, fg = self.latent_split or (self.z_dim // 2, self.z_dim - self.z_dim // 2)
    if bg + fg != self.z_dim or min(bg, fg) <= 0:
      raise ValueError(f'latent_split {self.latent_split} must be two positive widths summing '
                       f'to z_dim = {self.z_dim}')
    return {'motion_net_bg': bg, 'motion_net_fg': fg}

  def motion_inputs(self, video, label_onehot):
    """concat(I0, I_t - I0 for t = 1..K, labels) per motion path: a list of (B, H, W, ·)."""
    i0 = video[:, 0]
    diffs = [video[:, t] - i0 for t in range(1, video.shape[1])]
    y = jnp.concatenate([i0] + diffs, axis=-1)
    if label_onehot is None:
      return [y]
    if not self.two_path:
      return [jnp.concatenate([y, label_onehot], axis=-1)]
    bg = label_onehot[..., :self.num_bg_classes]
    fg = label_onehot[..., self.num_bg_classes:]
    return [jnp.concatenate([y, bg], axis=-1), jnp.concatenate([y, fg], axis=-1)]

  def posterior(self, video, label_onehot, train):
    """mu, logvar of Q(z | clip, labels), each (B, n, z_dim)."""
    stats = [MotionNet(self.motion_widths, self.latent_channels, self.z_dim, out_dim,
                       self.logvar_bias_init, self.dtype, name=name)(x, train)
             for (name, out_dim), x in zip(self.path_widths.items(),
                                           self.motion_inputs(video, label_onehot))]
    mu = jnp.concatenate([s[0] for s in stats], axis=-1)
    logvar = jnp.concatenate([s[1] for s in stats], axis=-1)
    return mu, logvar

  @nn.compact
  def __call__(self, video, label_onehot, noise=None, z=None, train: bool = False,
               posterior_mean: bool = False):
    k = self.num_predicted_frames
    b, _, h, w, c = video.shape
    if (h, w) != tuple(self.image_size) or c != self.channels:
      raise ValueError(f'video frames are {h}x{w}x{c}, the model is configured for '
                       f'{self.image_size[0]}x{self.image_size[1]}x{self.channels}')
    if (label_onehot is None) != (self.num_classes == 0):
      raise ValueError('the image-only model (num_classes = 0) takes label_onehot=None, and '
                       f'only it: got {"None" if label_onehot is None else label_onehot.shape} '
                       f'for num_classes = {self.num_classes}')
    if self.two_path and label_onehot is None:
      raise ValueError('the two-path model needs label maps (num_classes > 0)')
    n, _ = self.latent_shape
    i0 = video[:, 0]
    e1, e2, e3, codex = ImageEncoder(self.encoder_widths, self.dtype, name='encoder')(
        i0 if label_onehot is None else jnp.concatenate([i0, label_onehot], axis=-1), train)

    mu = logvar = None
    if video.shape[1] > 1:
      if video.shape[1] != k + 1:
        raise ValueError(f'video has {video.shape[1]} frames; the motion encoder needs 1 + '
                         f'{k} (first frame and the predicted ones), or 1 for generation')
      mu, logvar = self.posterior(video, label_onehot, train)
    if z is None and posterior_mean:
      if mu is None:
        raise ValueError('posterior_mean needs the whole clip (K + 1 frames) for the motion '
                         'encoder')
      z = mu
    if z is None:
      eps = jax.random.normal(self.make_rng('latent'), (b, n, self.z_dim))
      z = mu + jnp.exp(0.5 * logvar) * eps if (train and mu is not None) else eps

    zmap = layers.rows_to_nhwc(nn.Dense(self.z_dim, name='fc')(z),
                               (self.latent_channels, h // 16, w // 16))
    codey = layers.ConvBase(self.code_channels * k, 3, 1, 1, self.dtype, name='zconv')(
        jnp.concatenate([zmap.astype(codex.dtype), codex], axis=-1), train)
    # Frame k's motion code is channel group k; decode all frames as one clip-major batch.
    codes = codey.reshape(codey.shape[:3] + (k, self.code_channels))
    codes = jnp.moveaxis(codes, 3, 1).reshape((b * k,) + codey.shape[1:3] + (self.code_channels,))
    zin = jnp.concatenate([jnp.repeat(codex, k, axis=0), codes], axis=-1)
    feat = FlowDecoder(self.encoder_widths, k, self.dtype, self.upconv_upsampling,
                       name='flow_decoder')(e1, e2, e3, zin, train)

    per_clip = lambda x: x.reshape((b, k) + x.shape[1:])
    head = lambda name: Head(self.head_width, self.dtype, self.upconv_upsampling, name=name)
    unit = (jnp.asarray([2.0 / (w - 1), 2.0 / (h - 1)], jnp.float32) if self.flow_in_pixels
            else 1.0)
    flow = per_clip(head('flownext')(feat, train)) * unit
    flow_back = per_clip(head('flowprev')(feat, train)) * unit
    masks = per_clip(nn.sigmoid(head('get_mask')(feat, train)))
    mask_fw, mask_bw = masks[..., 0], masks[..., 1]

    i0_k = jnp.broadcast_to(i0[:, None], (b, k, h, w, c))
    warped = warp(i0_k, flow * mask_fw[..., None])

    if noise is None:
      noise = jax.random.normal(self.make_rng('noise'), i0.shape)
    m = mask_fw[..., None]
    refine_in = warped * m + noise[:, None] * (1.0 - m)
    refine = RefineNet(self.refine_widths, self.refine_depths, self.refine_bottleneck,
                       self.channels, k, self.remat_refine, self.dtype, name='refine_net')
    # Frame-major batch so that BatchNorm groups are the K frames, as in the original.
    frame_major = lambda x: jnp.swapaxes(x, 0, 1).reshape((k * b, h, w, c))
    refined = refine(frame_major(refine_in), train,
                     frame_major(warped) if self.refine_residual else None)
    refined = jnp.swapaxes(refined.reshape((k, b, h, w, c)), 0, 1)

    return dict(warped=warped, refined=refined, flow=flow, flow_back=flow_back,
                mask_fw=mask_fw, mask_bw=mask_bw, mu=mu, logvar=logvar, z=z)


def example_inputs(model: Img2Vid, batch: int = 1):
  """Zero inputs of the right shapes for `model.init` (a full clip, so every module exists)."""
  h, w = model.image_size
  video = jnp.zeros((batch, model.num_predicted_frames + 1, h, w, model.channels))
  labels = jnp.zeros((batch, h, w, model.num_classes)) if model.num_classes else None
  noise = jnp.zeros((batch, h, w, model.channels))
  z = jnp.zeros((batch,) + model.latent_shape)
  return video, labels, noise, z


def init_variables(model: Img2Vid, rng, batch: int = 1):
  """Initial variables ({'params', 'batch_stats'}) of `model`, computed under jit.

  Uses the non-partitionable threefry generator: XLA:CPU compiles the partitionable one for
  the model's ~100 parameter tensors about 6x slower (44 s instead of 7 s for the small CPU
  configuration), and parameters are replicated, so its sharding benefit does not apply.
  """
  with jax.threefry_partitionable(False):
    return jax.jit(model.init)(rng, *example_inputs(model, batch))
