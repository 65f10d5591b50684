"""Backward bilinear warp, written by hand.

seg2vid moves pixels with a backward warp, ``out(p) = x(p - f(p))``, where the flow ``f`` is in
normalised image coordinates (x and y each span [-1, 1] across the image, channel 0 = x) and the
sampling follows PyTorch's ``grid_sample`` with ``align_corners=True`` and zero padding (what
the authors ran). We write it ourselves, as four gathers with their bilinear weights, rather
than going through ``jax.scipy.ndimage.map_coordinates``: it is the inner loop of both the model
and three loss terms, it must give gradients to the image and to the flow, and a flat gather
over ``H*W`` is both simpler for XLA and faster than the generic N-d interpolator.

Derivatives go through a second formulation of the same warp (`custom_jvp`): the four taps are
one gather of flat indices into the image padded by one zero pixel (no masks), so that reverse
mode scatters the image gradient with one scatter-add instead of four, and the sums over
channels in the flow gradient are written out when there are few channels. On a single CPU
device it runs over chunks of `_CPU_CHUNK_PIXELS` pixels (`lax.map`, rematerialised), which
keeps its temporaries at a few MB instead of several times the images (fresh large buffers
are expensive on CPU). Forward + backward at the training size (32 frames of 128x256x3, both
gradients) is about 2x faster than plain autodiff of the four gathers and than
``map_coordinates`` (benchmarks/warp.py). The value is always the four gathers: without
derivatives nothing changed.
"""

import jax
from jax import lax
import jax.numpy as jnp


def flow_to_pixels(flow):
  """Converts a normalised flow (..., H, W, 2) to pixel units (x and y scaled separately)."""
  h, w = flow.shape[-3], flow.shape[-2]
  scale = jnp.array([(w - 1) / 2.0, (h - 1) / 2.0], flow.dtype)
  return flow * scale


def pixels_to_flow(flow_px):
  """Converts a flow in pixels (..., H, W, 2) to the normalised units the model uses."""
  h, w = flow_px.shape[-3], flow_px.shape[-2]
  scale = jnp.array([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], flow_px.dtype)
  return flow_px * scale


def _warp_single(image, flow):
  """Warps one image (H, W, C) by one flow (H, W, 2); see `warp`."""
  h, w, c = image.shape
  dtype = jnp.promote_types(flow.dtype, jnp.float32)
  flow_px = flow_to_pixels(flow.astype(dtype))
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype), indexing='ij')
  # Sampling position in pixels: p - f(p).
  px = xs - flow_px[..., 0]
  py = ys - flow_px[..., 1]
  x0 = jnp.floor(px)
  y0 = jnp.floor(py)
  wx1 = px - x0
  wy1 = py - y0
  wx0 = 1.0 - wx1
  wy0 = 1.0 - wy1
  x0i = x0.astype(jnp.int32)
  y0i = y0.astype(jnp.int32)
  flat = image.reshape(h * w, c)

  def tap(yi, xi, weight):
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    index = jnp.clip(yi, 0, h - 1) * w + jnp.clip(xi, 0, w - 1)
    values = jnp.take(flat, index.reshape(-1), axis=0).reshape(h, w, c)
    return values * jnp.where(inside, weight, 0.0)[..., None].astype(image.dtype)

  return (tap(y0i, x0i, wy0 * wx0) + tap(y0i, x0i + 1, wy0 * wx1) +
          tap(y0i + 1, x0i, wy1 * wx0) + tap(y0i + 1, x0i + 1, wy1 * wx1))


def warp(image, flow):
  """Backward bilinear warp: ``out(p) = image(p - flow(p))``.

  Args:
    image: (..., H, W, C) array.
    flow: (..., H, W, 2) array in normalised units (x first), with the same leading axes as
      `image` (broadcast them first if one image is warped by several flows).

  Returns:
    (..., H, W, C): bilinear samples with zeros outside the image, align_corners=True, so
    zero flow is exactly the identity. Differentiable in both arguments.
  """
  if image.shape[:-1] != flow.shape[:-1] or flow.shape[-1] != 2:
    raise ValueError(f'warp: image {image.shape} and flow {flow.shape} do not match: expected '
                     'image (..., H, W, C) and flow (..., H, W, 2) with the same leading axes')
  lead = image.shape[:-3]
  image_flat = image.reshape((-1,) + image.shape[-3:])
  flow_flat = flow.reshape((-1,) + flow.shape[-3:])
  out = _warp_batch(image_flat, flow_flat)
  return out.reshape(lead + out.shape[1:])


# Pixels per chunk of the differentiated warp on CPU: two 128x256 frames. Forward + backward
# of 32 such frames took about as long in chunks of 2 or 4 frames, 15-35% longer in chunks of
# 1 or 8, and ~30% longer unchunked (benchmarks/warp.py setting, one interleaved run each).
_CPU_CHUNK_PIXELS = 1 << 16
_PROMISE = lax.GatherScatterMode.PROMISE_IN_BOUNDS
_TAP_ROWS = lax.GatherDimensionNumbers(offset_dims=(4,), collapsed_slice_dims=(0,),
                                       start_index_map=(0,))
_UNROLL_CHANNELS = 8  # Up to this many channels, sums over channels are written out.


def _taps(flow, h, w):
  """Flat indices (N, H, W, 4) into the images padded by one pixel, and the 4 weights.

  The sampling point p - f splits exactly into an integer (p - ceil(f)) and a fraction
  (ceil(f) - f, in [0, 1)) from the flow in pixels alone. Computing floor(p - f) and
  p - f - floor(p - f) instead is not safe here: XLA may contract p - f into a fused
  multiply-add in one fusion and not in another, and an index and a weight from the two
  roundings of a point within float rounding of a pixel boundary are a whole pixel apart.
  """
  dtype = jnp.promote_types(flow.dtype, jnp.float32)
  flow_px = flow_to_pixels(flow.astype(dtype))
  cx = jnp.ceil(flow_px[..., 0])
  cy = jnp.ceil(flow_px[..., 1])
  wx1 = cx - flow_px[..., 0]
  wy1 = cy - flow_px[..., 1]
  wx0 = 1.0 - wx1
  wy0 = 1.0 - wy1
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.int32), jnp.arange(w, dtype=jnp.int32),
                        indexing='ij')
  x0i = xs - cx.astype(jnp.int32)
  y0i = ys - cy.astype(jnp.int32)
  # Clipped to the zero border, a tap outside the image reads 0: no masks needed.
  xa = jnp.clip(x0i, -1, w) + 1
  xb = jnp.clip(x0i + 1, -1, w) + 1
  ya = jnp.clip(y0i, -1, h) + 1
  yb = jnp.clip(y0i + 1, -1, h) + 1
  base = jnp.arange(flow.shape[0], dtype=jnp.int32)[:, None, None] * (h + 2)
  row_a = (base + ya) * (w + 2)
  row_b = (base + yb) * (w + 2)
  index = jnp.stack([row_a + xa, row_a + xb, row_b + xa, row_b + xb], axis=-1)
  return index, (wy0 * wx0, wy0 * wx1, wy1 * wx0, wy1 * wx1)


def _warp_padded(image, flow):
  """`_warp_single` over a batch (N, H, W, C), as one gather of the four taps (see above)."""
  n, h, w, c = image.shape
  index, weights = _taps(flow, h, w)
  flat = jnp.pad(image, ((0, 0), (1, 1), (1, 1), (0, 0))).reshape(n * (h + 2) * (w + 2), c)
  taps = lax.gather(flat, index[..., None], _TAP_ROWS, (1, c), mode=_PROMISE)  # (N,H,W,4,C)
  weights = [wt.astype(image.dtype) for wt in weights]
  if c <= _UNROLL_CHANNELS:  # Per channel: the transposes are sums, not reductions over C.
    return jnp.stack([taps[..., 0, k] * weights[0] + taps[..., 1, k] * weights[1] +
                      taps[..., 2, k] * weights[2] + taps[..., 3, k] * weights[3]
                      for k in range(c)], axis=-1)
  return (taps[..., 0, :] * weights[0][..., None] + taps[..., 1, :] * weights[1][..., None] +
          taps[..., 2, :] * weights[2][..., None] + taps[..., 3, :] * weights[3][..., None])


def _warp_chunked(image, flow):
  """`_warp_padded` over chunks of at most `_CPU_CHUNK_PIXELS` pixels, rematerialised.

  Only on a single CPU device: elsewhere the batch may be sharded, and a loop over its chunks
  would gather it onto every device.
  """
  n, h, w, c = image.shape
  if jax.default_backend() != 'cpu' or jax.device_count() != 1:
    return _warp_padded(image, flow)
  chunk = max((d for d in range(2, n + 1) if n % d == 0 and d * h * w <= _CPU_CHUNK_PIXELS),
              default=1)
  if chunk >= n:
    return _warp_padded(image, flow)
  body = jax.checkpoint(lambda args: _warp_padded(*args))
  out = lax.map(body, (image.reshape((n // chunk, chunk, h, w, c)),
                       flow.reshape((n // chunk, chunk, h, w, 2))))
  return out.reshape(n, h, w, c)


@jax.custom_jvp
def _warp_batch(image, flow):
  """`_warp_single` over a batch (N, H, W, C): the four gathers, fused by XLA."""
  return jax.vmap(_warp_single)(image, flow)


def _warp_batch_jvp(primals, tangents):
  # The value is the fused four gathers (as without derivatives); the tangent, and so the
  # gradients, come from the one-gather, chunked formulation of the same warp, of the
  # arguments that have one: a data frame warped by a predicted flow (the model, the losses)
  # gets no image gradient at all. (Measured: symbolic zeros are also faster when both have.)
  image, flow = primals
  t_image, t_flow = tangents
  out = _warp_batch(image, flow)
  image_zero = isinstance(t_image, jax.custom_derivatives.SymbolicZero)
  flow_zero = isinstance(t_flow, jax.custom_derivatives.SymbolicZero)
  if image_zero and flow_zero:
    return out, jnp.zeros_like(out)
  if image_zero:
    _, t_out = jax.jvp(lambda f: _warp_chunked(image, f), (flow,), (t_flow,))
  elif flow_zero:
    _, t_out = jax.jvp(lambda x: _warp_chunked(x, flow), (image,), (t_image,))
  else:
    _, t_out = jax.jvp(_warp_chunked, primals, tangents)
  return out, t_out


_warp_batch.defjvp(_warp_batch_jvp, symbolic_zeros=True)
