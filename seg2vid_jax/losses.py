"""The training objective of seg2vid: nine terms and their weights (MODEL.md, "Losses").

Each term is a small pure function of model outputs and ground truth, in NHWC. `objective`
returns every term unweighted (as the published code logs them) and the weighted `total`.
Shapes: video (B, T, H, W, C) with I0 = video[:, 0] and gt_k = video[:, k + 1]; flows
(B, K, H, W, 2) in normalised units; masks (B, K, H, W).
"""

from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from seg2vid_jax.models.vgg import VGG19Features
from seg2vid_jax.ops import warp

# The published weights of the nine terms.
WEIGHTS = dict(flow_smooth=1.0, recon=2.0, recon_back=1.0, recon_before=1.0, kld=0.1,
               flow_consist=1.0, similarity=1.0, vgg=1.0, mask=0.1)
_SMOOTH_RADIUS = 2


def flow_smoothness(flow, image):
  """Edge-aware smoothness of one flow field (B, H, W, 2) given its image (B, H, W, C).

  For each of the 16 offsets d with both components in {-2, -1, 1, 2}: the squared flow
  difference |f(p) - f(p + d)|^2, weighted by exp(-|I(p) - I(p + d)|^2 - |d|^2) (flow scaled
  by 128, image by 256, as published), summed over interior pixels and offsets and divided
  by B·H·W. Flow may change where the image has an edge, and should not elsewhere.
  """
  f = flow * 128.0
  img = image * 256.0
  b, h, w, _ = img.shape
  r = _SMOOTH_RADIUS
  center = lambda x: x[:, r:h - r, r:w - r]
  total = 0.0
  for di in range(-r, r + 1):
    for dj in range(-r, r + 1):
      if di == 0 or dj == 0:
        continue
      shifted = lambda x: x[:, r + di:h - r + di, r + dj:w - r + dj]
      d_f = jnp.sum(jnp.square(center(f) - shifted(f)), axis=-1)
      d_i = jnp.sum(jnp.square(center(img) - shifted(img)), axis=-1)
      total = total + jnp.sum(d_f * jnp.exp(-d_i - (di * di + dj * dj)))
  return total / (b * h * w)


def flow_smooth_loss(outputs, video):
  """Term 1: 0.01·(smoothness of f_0 on gt_1 + smoothness of b_0 on I0), first step only."""
  return 0.01 * (flow_smoothness(outputs['flow'][:, 0], video[:, 1]) +
                 flow_smoothness(outputs['flow_back'][:, 0], video[:, 0]))


def recon_loss(outputs, video):
  """Term 2: mean |refined - gt|, the L1 error of the final prediction."""
  return jnp.mean(jnp.abs(outputs['refined'] - video[:, 1:]))


def recon_back_loss(outputs, video):
  """Term 3: each gt_k warped back to frame 0 by the masked backward flow should be I0
  (mean |(warp(gt_k, -b_k·m_bw,k) - I0)·m_bw,k|); trains the backward flow."""
  m = outputs['mask_bw'][..., None]
  prev = warp(video[:, 1:], -outputs['flow_back'] * m)
  return jnp.mean(jnp.abs(prev * m - video[:, :1] * m))


def recon_before_loss(outputs, video):
  """Term 4: mean |(warped_k - gt_k)·m_fw,k|: the warp alone, before refinement, where the
  forward mask says the pixel is visible."""
  m = outputs['mask_fw'][..., None]
  return jnp.mean(jnp.abs(outputs['warped'] * m - video[:, 1:] * m))


def kld_loss(mu, logvar):
  """Term 5: KL(Q(z | clip) || N(0, I)), summed over the batch and divided by 1000."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar)) / 1000.0


def flow_consistency_loss(outputs):
  """Term 6: forward and backward flows should invert each other where visible:
  sum over k of mean(m_bw·|warp(f_k, -b_k) - b_k|) + mean(m_fw·|warp(b_k, f_k) - f_k|)."""
  f, bk = outputs['flow'], outputs['flow_back']
  m_fw, m_bw = outputs['mask_fw'][..., None], outputs['mask_bw'][..., None]
  per_frame = (jnp.mean(m_bw * jnp.abs(warp(f, -bk) - bk), axis=(0, 2, 3, 4)) +
               jnp.mean(m_fw * jnp.abs(warp(bk, f) - f), axis=(0, 2, 3, 4)))
  return jnp.sum(per_frame)


def _mean_filter3(x):
  """3x3 mean filter, valid, stride 1, over (N, H, W, C)."""
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), 'VALID') / 9.0


def ssim_loss(x, y):
  """mean(clip((1 - SSIM) / 2, 0, 1)) of images (N, H, W, C), SSIM from 3x3 mean filters."""
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  mu_x, mu_y = _mean_filter3(x), _mean_filter3(y)
  sigma_x = _mean_filter3(x * x) - mu_x ** 2
  sigma_y = _mean_filter3(y * y) - mu_y ** 2
  sigma_xy = _mean_filter3(x * y) - mu_x * mu_y
  ssim = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2) /
          ((mu_x ** 2 + mu_y ** 2 + c1) * (sigma_x + sigma_y + c2)))
  return jnp.mean(jnp.clip((1 - ssim) / 2, 0, 1))


def similarity_loss(outputs, video, alpha=0.85):
  """Term 7: sum over k of 0.85·SSIM loss + 0.15·L1 between refined_k and gt_k."""
  refined, gt = outputs['refined'], video[:, 1:]
  return sum(alpha * ssim_loss(refined[:, k], gt[:, k]) +
             (1 - alpha) * jnp.mean(jnp.abs(refined[:, k] - gt[:, k]))
             for k in range(refined.shape[1]))


def perceptual_loss(outputs, video, vgg_params):
  """Term 8: sum over relu1_1 ... relu4_4 of mean |phi(gt_k) - phi(warped_k)|, phi = frozen
  VGG19 (average pooling). It compares the *warped* frames, as published."""
  vgg = VGG19Features()
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  params = {'params': jax.lax.stop_gradient(vgg_params)}
  pred = vgg.apply(params, flat(outputs['warped']))
  true = vgg.apply(params, jax.lax.stop_gradient(flat(video[:, 1:])))
  return sum(jnp.mean(jnp.abs(t - p)) for t, p in zip(true, pred))


def mask_loss(outputs):
  """Term 9: mean(1 - m_bw) + mean(1 - m_fw): keeps the masks from closing everywhere."""
  return jnp.mean(1 - outputs['mask_bw']) + jnp.mean(1 - outputs['mask_fw'])


def objective(outputs: Mapping[str, jnp.ndarray], video, vgg_params=None,
              weights: Optional[Mapping[str, float]] = None):
  """All nine terms (unweighted) and their weighted sum under 'total'.

  Args:
    outputs: the dict returned by `Img2Vid` with the posterior (mu, logvar present).
    video: (B, K + 1, H, W, C) ground-truth clip in [0, 1].
    vgg_params: frozen VGG19 parameters (`seg2vid_jax.convert.vgg_from_torch` or
      `seg2vid_jax.vgg_weights.load`); None turns the perceptual term off (it is then 0).
    weights: per-term weights; defaults to the published `WEIGHTS`.
  """
  weights = dict(WEIGHTS if weights is None else weights)
  terms = dict(
      flow_smooth=flow_smooth_loss(outputs, video),
      recon=recon_loss(outputs, video),
      recon_back=recon_back_loss(outputs, video),
      recon_before=recon_before_loss(outputs, video),
      kld=kld_loss(outputs['mu'], outputs['logvar']),
      flow_consist=flow_consistency_loss(outputs),
      similarity=similarity_loss(outputs, video),
      vgg=(perceptual_loss(outputs, video, vgg_params) if vgg_params is not None
           else jnp.zeros((), jnp.float32)),
      mask=mask_loss(outputs))
  terms['total'] = sum(weights[name] * value for name, value in terms.items())
  return terms
