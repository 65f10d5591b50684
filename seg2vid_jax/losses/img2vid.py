"""The training objective of seg2vid: nine terms and their weights (MODEL.md, "Losses").

Each term is a small pure function of model outputs and ground truth, in NHWC. `objective`
returns every term unweighted (as the published code logs them) and the weighted `total`.
Shapes: video (B, T, H, W, C) with I0 = video[:, 0] and gt_k = video[:, k + 1]; flows
(B, K, H, W, 2) in normalised units; masks (B, K, H, W).
"""

from typing import Mapping, Optional

import jax
import jax.numpy as jnp

from seg2vid_jax.evaluation import kl_per_clip, moving_object_mask
from seg2vid_jax.models.vgg import VGG19Features
from seg2vid_jax.ops import warp

# The published weights of the nine terms.
WEIGHTS = dict(flow_smooth=1.0, recon=2.0, recon_back=1.0, recon_before=1.0, kld=0.1,
               flow_consist=1.0, similarity=1.0, vgg=1.0, mask=0.1)
# Terms that are not in the published objective; off (weight 0) unless a config sets them.
EXTRA_WEIGHTS = dict(photometric=0.0, flow_supervised=0.0, flow_supervised_objects=0.0)
_SMOOTH_RADIUS = 2
PHOTOMETRIC_SCALES = (1, 2, 4, 8)


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


def kld_loss(mu, logvar, free_nats: float = 0.0):
  """Term 5: KL(Q(z | clip) || N(0, I)), summed over the batch and divided by 1000.

  free_nats > 0 (not published; "free bits", Kingma et al. 2016) charges each clip at least
  that many nats, so the KL of a clip below it has no gradient: the posterior may carry that
  much about the clip's motion before the term pulls it towards the prior. Adam rescales
  the KL's gradient on the encoder's mu/logvar layers to a full step whatever its weight, so
  the published 0.1/1000 does not stop those layers from collapsing onto the prior.
  """
  if not free_nats:
    return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar)) / 1000.0
  return jnp.sum(jnp.maximum(kl_per_clip(mu, logvar), free_nats)) / 1000.0


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
  VGG19 (average pooling). It compares the *warped* frames, as published; grayscale frames
  (the KTH model) are repeated to three channels, as the original does."""
  vgg = VGG19Features()
  rgb = lambda x: jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
  flat = lambda x: rgb(x.reshape((-1,) + x.shape[2:]))
  params = {'params': jax.lax.stop_gradient(vgg_params)}
  pred = vgg.apply(params, flat(outputs['warped']))
  true = vgg.apply(params, jax.lax.stop_gradient(flat(video[:, 1:])))
  return sum(jnp.mean(jnp.abs(t - p)) for t, p in zip(true, pred))


def _avg_pool(x, s):
  """s x s average pooling, stride s, over (N, H, W, C)."""
  if s == 1:
    return x
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, s, s, 1), (1, s, s, 1),
                               'VALID') / (s * s)


def photometric_loss(outputs, video, scales=PHOTOMETRIC_SCALES):
  """Extra term (not published): the *unmasked* warped frames against the true ones, over an
  average-pooling pyramid: sum over s of mean |warp(P_s I0, P_s(f_k·m_fw,k)) - P_s gt_k|.

  The published objective's only loss on the unmasked warped frames is the VGG term, whose deep
  features see far around each pixel; without VGG weights (offline) nothing else pulls the
  flow over more than the one pixel a bilinear warp's gradient sees, and the masked terms can
  be lowered by closing the masks. Warping the pooled first frame by the pooled flow at
  coarser levels widens the basin (coarse-to-fine, as in unsupervised flow training) and
  needs no download. Scale 1 is `warped` itself.
  """
  b, k, h, w, c = video[:, 1:].shape
  flow = (outputs['flow'] * outputs['mask_fw'][..., None]).reshape(b * k, h, w, 2)
  total = 0.0
  for s in scales:
    if s == 1:
      warped = outputs['warped'].reshape(b * k, h, w, c)
    else:
      i0 = jnp.repeat(_avg_pool(video[:, 0], s), k, axis=0)  # (B·K, h/s, w/s, C), clip-major.
      warped = warp(i0, _avg_pool(flow, s))
    gt = _avg_pool(video[:, 1:].reshape(b * k, h, w, c), s)
    total = total + jnp.mean(jnp.abs(warped - gt))
  return total


def flow_supervised_loss(outputs, flow_true, valid):
  """Extra term (not published; needs exact flow, so synthetic data only): the mean end-point
  error in pixels of the raw forward flow against the true flow, over the valid pixels.

  The published objective trains the flow only through the bilinear warp, whose gradient sees
  one pixel around each source; cars that move several pixels per frame give it nothing to
  follow, and the first frame does not say where they go, so the decoder learns ~zero flow
  and ignores z (docs/ABLATION.md). The true flow of the clip is what the posterior encodes;
  supervising it forces the decoder to read z. The flow is in normalised units, the error in
  pixels, as `evaluation.endpoint_error_px` reports it.
  """
  h, w = flow_true.shape[-3:-1]
  to_px = jnp.array([(w - 1) / 2.0, (h - 1) / 2.0], jnp.float32)
  epe = jnp.sqrt(jnp.sum(jnp.square((outputs['flow'] - flow_true) * to_px), axis=-1) + 1e-6)
  valid = jnp.asarray(valid, jnp.float32)
  return jnp.sum(epe * valid) / jnp.maximum(jnp.sum(valid), 1.0)


def flow_supervised_objects_loss(outputs, flow_true, valid, labels):
  """Extra term (not published; synthetic data only): `flow_supervised_loss` over the
  moving-object pixels alone (`evaluation.moving_object_mask`), 0 for a batch without any.

  Cars and people are a few percent of the pixels, so the plain supervised term is mostly the
  camera's flow; this one gives the objects' motion, which only z can say (directions are
  random), a weight of its own.
  """
  return flow_supervised_loss(outputs, flow_true, moving_object_mask(labels, flow_true, valid))


def mask_loss(outputs):
  """Term 9: mean(1 - m_bw) + mean(1 - m_fw): keeps the masks from closing everywhere."""
  return jnp.mean(1 - outputs['mask_bw']) + jnp.mean(1 - outputs['mask_fw'])


def objective(outputs: Mapping[str, jnp.ndarray], video, vgg_params=None,
              weights: Optional[Mapping[str, float]] = None, kl_free_nats: float = 0.0,
              flow_true=None, valid=None, labels=None):
  """All nine terms (unweighted; those weighted by a constant 0 left out) and their weighted
  sum under 'total'.

  Args:
    outputs: the dict returned by `Img2Vid` with the posterior (mu, logvar present).
    video: (B, K + 1, H, W, C) ground-truth clip in [0, 1].
    vgg_params: frozen VGG19 parameters (`seg2vid_jax.convert.vgg_from_torch` or
      `seg2vid_jax.vgg_weights.load`); None turns the perceptual term off (it is then 0).
    weights: per-term weights over the published `WEIGHTS` (missing names keep theirs) and
      `EXTRA_WEIGHTS` (off unless given); an extra term is computed only when weighted.
    kl_free_nats: free nats per clip of the KL term (0: as published), see `kld_loss`.
    flow_true, valid: the clip's exact flow (B, K, H, W, 2) and where it is defined (B, K, H,
      W), needed by the extra supervised flow terms only (synthetic data); labels (B, H, W)
      frame-0 train ids, needed by `flow_supervised_objects` only.
  """
  unknown = set(weights or {}) - set(WEIGHTS) - set(EXTRA_WEIGHTS)
  if unknown:
    raise ValueError(f'unknown loss terms {sorted(unknown)}; the terms are '
                     f'{sorted(WEIGHTS)} and the extra {sorted(EXTRA_WEIGHTS)}')
  weights = {**WEIGHTS, **EXTRA_WEIGHTS, **(weights or {})}
  terms = dict(
      flow_smooth=flow_smooth_loss(outputs, video),
      recon=recon_loss(outputs, video),
      recon_back=recon_back_loss(outputs, video),
      recon_before=recon_before_loss(outputs, video),
      kld=kld_loss(outputs['mu'], outputs['logvar'], kl_free_nats),
      flow_consist=flow_consistency_loss(outputs),
      similarity=similarity_loss(outputs, video),
      vgg=(perceptual_loss(outputs, video, vgg_params) if vgg_params is not None
           else jnp.zeros((), jnp.float32)),
      mask=mask_loss(outputs))
  if weights['photometric']:
    terms['photometric'] = photometric_loss(outputs, video)
  if weights['flow_supervised']:
    if flow_true is None or valid is None:
      raise ValueError('loss term flow_supervised needs the exact flow and valid mask of the '
                       'clip (batch keys "flow" and "valid"; the synthetic dataset has them)')
    terms['flow_supervised'] = flow_supervised_loss(outputs, flow_true, valid)
  if weights['flow_supervised_objects']:
    if flow_true is None or valid is None or labels is None:
      raise ValueError('loss term flow_supervised_objects needs the exact flow, valid mask and '
                       'labels of the clip (batch keys "flow", "valid", "labels"; the synthetic '
                       'dataset has them)')
    terms['flow_supervised_objects'] = flow_supervised_objects_loss(outputs, flow_true, valid,
                                                                    labels)
  # A term weighted by a constant 0 is left out (of the total and of the terms reported and
  # checked for non-finite values), so that a term switched off, e.g. the KL of the z = mu
  # probe, whose posterior is unbounded, cannot stop training.
  terms = {name: value for name, value in terms.items()
           if not (isinstance(weights[name], (int, float)) and weights[name] == 0)}
  terms['total'] = sum(weights[name] * value for name, value in terms.items())
  return terms
