"""Speed of our backward warp against jax.scipy.ndimage.map_coordinates, in one run.

Times, at the model's size (images (8, 4, 128, 256, 3), flows (8, 4, 128, 256, 2) of a few
pixels, some leaving the image), the forward warp, forward + backward (the gradients of
sum(out**2) with respect to both the image and the flow), and forward + backward with the
flow gradient only (a data frame warped by a predicted flow, as in the model and the losses),
of `seg2vid_jax.ops.warp` and of the same warp through `map_coordinates`, all jitted and
compiled before timing. The two are timed interleaved (A, B, A, B, ...) so that the load of a
shared machine hits both alike; medians and their ratio are printed, with the differences
between the two outputs and gradients, checked in the same run.

The flow gradient of a bilinear warp jumps where a sampling point crosses a pixel boundary,
and two float32 implementations round points within ~1e-5 px of a boundary to different
sides: those few elements are counted apart, the rest must agree to float rounding.

  CUDA_VISIBLE_DEVICES= PYTHONPATH=. python benchmarks/warp.py [--batch=8 --frames=4] [--repeats=15]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from seg2vid_jax.ops import flow_to_pixels, pixels_to_flow, warp
from tests.test_warp import map_coordinates_warp  # The oracle of the warp's tests.


def map_coordinates_warp_batched(image, flow):
  """`map_coordinates_warp` vmapped over the leading axes of (..., H, W, C)."""
  lead = image.shape[:-3]
  out = jax.vmap(map_coordinates_warp)(image.reshape((-1,) + image.shape[-3:]),
                                       flow.reshape((-1,) + flow.shape[-3:]))
  return out.reshape(lead + out.shape[1:])


def inputs(batch, frames, height, width, seed=0):
  """Images in [0, 1] and flows of a few pixels: a smooth motion per clip plus pixel noise."""
  rng = np.random.default_rng(seed)
  image = rng.uniform(0, 1, (batch, frames, height, width, 3))
  shift = rng.uniform(-4, 4, (batch, frames, 1, 1, 2))  # Camera/object motion, pixels.
  jitter = rng.standard_normal((batch, frames, height, width, 2)) * 1.5
  flow = pixels_to_flow(jnp.asarray(shift + jitter, jnp.float32))
  return jnp.asarray(image, jnp.float32), flow


def timed(fn, args):
  t = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - t


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--frames', type=int, default=4)
  parser.add_argument('--height', type=int, default=128)
  parser.add_argument('--width', type=int, default=256)
  parser.add_argument('--repeats', type=int, default=15)
  args = parser.parse_args()

  image, flow = inputs(args.batch, args.frames, args.height, args.width)
  impls = {'ours': warp, 'map_coordinates': map_coordinates_warp_batched}
  fwd = {name: jax.jit(f) for name, f in impls.items()}
  # Forward + backward: gradients of sum(out**2) to the image and to the flow.
  fwd_bwd = {name: jax.jit(jax.value_and_grad(lambda x, f, fn=fn: jnp.sum(fn(x, f) ** 2),
                                              argnums=(0, 1)))
             for name, fn in impls.items()}
  # Flow gradient only (the image is data).
  flow_only = {name: jax.jit(jax.value_and_grad(lambda f, x, fn=fn: jnp.sum(fn(x, f) ** 2)))
               for name, fn in impls.items()}

  print(f'jax {jax.__version__} on {jax.devices()[0].platform}; images {image.shape}, '
        f'flows {flow.shape}, |flow| up to {float(jnp.abs(flow_to_pixels(flow)).max()):.1f} px')
  results = {}
  for name in impls:  # Compile (and warm up) before timing; check agreement.
    results[name] = (jax.block_until_ready(fwd[name](image, flow)),
                     jax.block_until_ready(fwd_bwd[name](image, flow)))
    jax.block_until_ready(flow_only[name](flow, image))
  (out_a, (_, (gi_a, gf_a))), (out_b, (_, (gi_b, gf_b))) = results.values()
  diff = lambda a, b: float(jnp.abs(a - b).max())
  print(f'max abs diff ours vs map_coordinates: out {diff(out_a, out_b):.2e} (values in [0, 1]), '
        f'grad image {diff(gi_a, gi_b):.2e} (max {float(jnp.abs(gi_b).max()):.1f})')
  # Flow gradient: apart from points within 1e-4 px of a pixel boundary (in float64).
  flow_px = np.asarray(flow_to_pixels(flow), np.float64)
  h, w = args.height, args.width
  point = np.stack([np.arange(w) - flow_px[..., 0], np.arange(h)[:, None] - flow_px[..., 1]],
                   axis=-1)
  near = np.abs(point - np.round(point)) < 1e-4
  gf_a, gf_b = np.asarray(gf_a), np.asarray(gf_b)
  scale = np.abs(gf_b).max()
  rel = np.abs(gf_a - gf_b) / scale
  print(f'grad flow (max {scale:.1f}): max diff / max {rel[~near].max():.2e} away from pixel '
        f'boundaries; at {int(near.sum())} components within 1e-4 px of one, '
        f'{int((rel[near] > 1e-4).sum())} differ by more than 1e-4 (derivative jumps there), '
        f'{int((rel[~near] > 1e-4).sum())} elsewhere')

  for label, fns, fn_args in (('forward', fwd, (image, flow)),
                              ('forward + backward', fwd_bwd, (image, flow)),
                              ('flow gradient only', flow_only, (flow, image))):
    times = {name: [] for name in fns}
    for _ in range(args.repeats):  # Interleaved: ours, theirs, ours, theirs, ...
      for name, fn in fns.items():
        times[name].append(timed(fn, fn_args))
    med = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    print(f'{label:>18}: ours {med["ours"]:8.2f} ms   map_coordinates '
          f'{med["map_coordinates"]:8.2f} ms   speedup {med["map_coordinates"] / med["ours"]:.2f}x'
          f'   (medians of {args.repeats}, interleaved)')


if __name__ == '__main__':
  main()
