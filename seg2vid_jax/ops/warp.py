"""Backward bilinear warp, written by hand.

seg2vid moves pixels with a backward warp, ``out(p) = x(p - f(p))``, where the flow ``f`` is in
normalised image coordinates (x and y each span [-1, 1] across the image, channel 0 = x) and the
sampling follows PyTorch's ``grid_sample`` with ``align_corners=True`` and zero padding (what
the authors ran). We write it ourselves, as four gathers with their bilinear weights, rather
than going through ``jax.scipy.ndimage.map_coordinates``: it is the inner loop of both the model
and three loss terms, it must give gradients to the image and to the flow, and a flat gather
over ``H*W`` is both simpler for XLA and faster than the generic N-d interpolator.
"""

import jax
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
  out = jax.vmap(_warp_single)(image_flat, flow_flat)
  return out.reshape(lead + out.shape[1:])
