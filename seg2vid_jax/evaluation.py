"""Evaluation metrics for predicted videos and flows.

The metric functions are pure and jit-able; they return one value per clip and predicted
frame, shape (B, K), so that per-frame curves (quality against time) can be reported.
Conventions: videos (B, K, H, W, C) float in [0, 1]; the K predicted frames are the
future frames 1..K of a clip whose frame 0 is the conditioning image. Flows
(B, K, H, W, 2) are in normalised units (x and y each span [-1, 1] across the image,
channel 0 = x).

`summarize` and `MetricAccumulator` are thin numpy helpers that reduce (B, K) arrays (and
per-clip (B,) values such as the KL) over the evaluation set, respecting a (B,) padding mask
for the last, padded batch.
"""

from typing import Dict, Mapping

import dm_pix
import jax.numpy as jnp
import numpy as np


def _per_frame(metric_fn, pred, target):
  """Applies an image metric to every frame: (B, K, H, W, C) pairs -> (B, K)."""
  pred = jnp.asarray(pred, jnp.float32)
  target = jnp.asarray(target, jnp.float32)
  b, k = pred.shape[:2]
  flat = lambda x: x.reshape((b * k,) + x.shape[2:])
  return metric_fn(flat(pred), flat(target)).reshape(b, k)


def psnr(pred, target):
  """Peak signal-to-noise ratio in dB per frame, (B, K, H, W, C) -> (B, K).

  Data range 1 (dm_pix.psnr). Identical frames give +inf.
  """
  return _per_frame(dm_pix.psnr, pred, target)


def ssim(pred, target, filter_size: int = 11):
  """Structural similarity per frame, (B, K, H, W, C) -> (B, K).

  dm_pix.ssim with data range 1 and the standard 11x11 Gaussian window (sigma 1.5);
  frames must be at least `filter_size` pixels high and wide.
  """
  metric = lambda a, b: dm_pix.ssim(a, b, max_val=1.0, filter_size=filter_size)
  return _per_frame(metric, pred, target)


def laplacian_energy(images):
  """Mean squared response of the 3x3 Laplacian per image, (..., H, W, C) in [0, 1] -> (...):
  the fine detail an image holds (blur lowers it, noise raises it)."""
  x = jnp.asarray(images, jnp.float32)
  lap = (4 * x[..., 1:-1, 1:-1, :] - x[..., :-2, 1:-1, :] - x[..., 2:, 1:-1, :] -
         x[..., 1:-1, :-2, :] - x[..., 1:-1, 2:, :])
  return jnp.mean(jnp.square(lap), axis=(-3, -2, -1))


def detail_ratio(pred, target):
  """Fine detail kept per frame, (B, K, H, W, C) pairs -> (B, K): the prediction's Laplacian
  energy over the true frame's (1: as detailed, below 1: blurrier); NaN for a flat true frame.

  PSNR rewards a blurred mean prediction under uncertainty; this shows the blur itself.
  """
  truth = laplacian_energy(target)
  return jnp.where(truth > 0, laplacian_energy(pred) / jnp.maximum(truth, 1e-12), jnp.nan)


def best_of_n(metric_samples, higher_is_better: bool = True):
  """Per-frame values of the best of N stochastic samples, (N, B, K) -> (B, K).

  The standard stochastic video prediction protocol (SVG, Denton & Fergus 2018; SAVP,
  Lee et al. 2018): for each clip, pick the ONE sample whose metric averaged over the K
  frames is best, and report that sample's per-frame values. (Picking the best sample
  independently per frame would mix samples and overstate quality.) Use
  `higher_is_better=False` for errors such as end-point error.
  """
  metric_samples = jnp.asarray(metric_samples)
  # Frames without a defined value (NaN, e.g. no moving-object pixels) do not count; a sample
  # with none at all ranks last.
  clip_score = jnp.nanmean(metric_samples, axis=-1)  # (N, B)
  clip_score = jnp.where(jnp.isnan(clip_score), -jnp.inf if higher_is_better else jnp.inf,
                         clip_score)
  best = (jnp.argmax if higher_is_better else jnp.argmin)(clip_score, axis=0)  # (B,)
  return jnp.take_along_axis(metric_samples, best[None, :, None], axis=0)[0]


def copy_first_frame_baseline(video):
  """The trivial 'nothing moves' prediction: frame 0 repeated for the K = T-1 future frames.

  video (B, T, H, W, C) -> (B, T-1, H, W, C). Any model should beat it on the metrics.
  """
  video = jnp.asarray(video)
  b, t = video.shape[:2]
  return jnp.broadcast_to(video[:, :1], (b, t - 1) + video.shape[2:])


def endpoint_error_px(flow_pred, flow_true, valid=None):
  """Mean end-point error in pixels per frame, flows (B, K, H, W, 2) -> (B, K).

  Normalised flow is converted to pixels with the image size (one pixel is 2/(W-1) in x
  and 2/(H-1) in y), then the Euclidean distance is averaged over all pixels, or over the
  pixels where the optional bool mask `valid` (B, K, H, W) is True. A frame without any
  valid pixel has no defined error and gives NaN (skipped by `MetricAccumulator`).
  """
  h, w = flow_pred.shape[-3:-1]
  to_px = jnp.array([(w - 1) / 2.0, (h - 1) / 2.0], jnp.float32)
  diff = (jnp.asarray(flow_pred, jnp.float32) - jnp.asarray(flow_true, jnp.float32)) * to_px
  epe = jnp.sqrt(jnp.sum(jnp.square(diff), axis=-1))  # (B, K, H, W)
  if valid is None:
    return jnp.mean(epe, axis=(-2, -1))
  valid = jnp.asarray(valid, bool)
  total = jnp.sum(jnp.where(valid, epe, 0.0), axis=(-2, -1))
  count = jnp.sum(valid, axis=(-2, -1))
  return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def moving_object_mask(labels, flow_true, valid, first_id: int = 11, last_id: int = 18):
  """Pixels of frame k that show a moving object, (B, K, H, W) bool.

  labels (B, H, W) are frame-0 train ids; a valid pixel p of frame k shows what frame 0 shows
  at its source p - flow_true(p) (the exact backward flow), so p is on an object when the
  frame-0 label at the nearest source pixel is in first_id..last_id (Cityscapes: person ...
  bicycle). Invalid pixels (disocclusions) are never counted.
  """
  labels = jnp.asarray(labels)
  b, k, h, w = flow_true.shape[:4]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing='ij')
  src_x = jnp.clip(jnp.round(xs - flow_true[..., 0] * (w - 1) / 2.0), 0, w - 1).astype(jnp.int32)
  src_y = jnp.clip(jnp.round(ys - flow_true[..., 1] * (h - 1) / 2.0), 0, h - 1).astype(jnp.int32)
  flat = labels.reshape(b, 1, h * w)
  source = jnp.take_along_axis(flat, (src_y * w + src_x).reshape(b, k, h * w), axis=-1)
  source = source.reshape(b, k, h, w)
  return jnp.asarray(valid, bool) & (source >= first_id) & (source <= last_id)


def kl_per_clip(mu, logvar):
  """KL(N(mu, exp(logvar)) || N(0, I)) in nats per clip, (B, n, z_dim) -> (B,).

  How much the posterior says about the clip beyond the prior: near 0 is a collapsed
  posterior whose z carries no motion.
  """
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), axis=(1, 2))


def _pairs(samples):
  """The pairs (i, j), i < j, of a leading axis of N >= 2 samples."""
  n = samples.shape[0]
  if n < 2:
    raise ValueError(f'the spread of samples needs at least 2 of them, got {n}')
  return [(i, j) for i in range(n) for j in range(i + 1, n)]


def sample_spread(samples):
  """Mean absolute difference between N samples, (N, B, K, H, W, C) -> (B, K).

  The mean over all pairs of samples of their mean absolute pixel difference: 0 when the
  latent has no effect on the prediction.
  """
  samples = jnp.asarray(samples, jnp.float32)
  return jnp.mean(jnp.stack([jnp.mean(jnp.abs(samples[i] - samples[j]), axis=(-3, -2, -1))
                             for i, j in _pairs(samples)]), axis=0)


def flow_spread_px(flows):
  """Mean end-point distance in pixels between N sampled flows, (N, B, K, H, W, 2) -> (B, K)."""
  flows = jnp.asarray(flows, jnp.float32)
  return jnp.mean(jnp.stack([endpoint_error_px(flows[i], flows[j])
                             for i, j in _pairs(flows)]), axis=0)


class MetricAccumulator:
  """Sums per-frame metrics over evaluation batches and reports their means.

  `update` takes a dict name -> (B, K) array (or (B,) for a per-clip value) and an optional
  (B,) bool mask that is False for padding rows of the last batch; masked rows are ignored
  whatever their values (even inf or NaN). NaN entries (e.g. end-point error of a frame
  without valid pixels) are undefined values and are skipped too. `result` gives python floats
  {'<name>/frame_<k>': mean over clips of frame k (k = 1..K, the predicted frames; not for
   per-clip values), '<name>/mean': mean over all counted (clip, frame) values}.
  """

  def __init__(self):
    self._sums: Dict[str, np.ndarray] = {}
    self._counts: Dict[str, np.ndarray] = {}
    self._per_clip = set()

  def update(self, per_frame: Mapping[str, np.ndarray], mask=None):
    """Adds one batch of (B, K) or (B,) metric values, rows with mask False left out."""
    for name, values in per_frame.items():
      values = np.asarray(values, np.float64)
      if values.ndim == 1:
        self._per_clip.add(name)
        values = values[:, None]
      if values.ndim != 2:
        raise ValueError(f'{name}: expected (B, K) or (B,) values, got shape {values.shape}')
      rows = (np.ones(values.shape[0], bool) if mask is None
              else np.asarray(mask, bool).reshape(values.shape[0]))
      keep = rows[:, None] & ~np.isnan(values)
      sums = np.where(keep, values, 0.0).sum(axis=0)
      counts = keep.sum(axis=0)
      if name in self._sums:
        if self._sums[name].shape != sums.shape:
          raise ValueError(f'{name}: number of frames changed from '
                           f'{self._sums[name].shape[0]} to {sums.shape[0]}')
        self._sums[name] = self._sums[name] + sums
        self._counts[name] = self._counts[name] + counts
      else:
        self._sums[name], self._counts[name] = sums, counts

  def result(self) -> Dict[str, float]:
    """The per-frame and overall means of everything accumulated so far."""
    out = {}
    for name, sums in self._sums.items():
      counts = self._counts[name]
      for k, (s, c) in enumerate(zip(sums, counts)):
        if name not in self._per_clip:
          out[f'{name}/frame_{k + 1}'] = float(s / c) if c else float('nan')
      total = counts.sum()
      out[f'{name}/mean'] = float(sums.sum() / total) if total else float('nan')
    return out


def summarize(per_frame: Mapping[str, np.ndarray], mask=None) -> Dict[str, float]:
  """Per-frame and overall means of (B, K) metrics over one batch, see MetricAccumulator.

  mask: optional (B,) bool, False for padding rows, which are ignored.
  """
  acc = MetricAccumulator()
  acc.update(per_frame, mask)
  return acc.result()
