"""The hand-written backward bilinear warp (seg2vid_jax.ops.warp)."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import ndimage
from jax.test_util import check_grads

from seg2vid_jax.ops import flow_to_pixels, pixels_to_flow, warp
from tests import parity


def _random(shape, seed, scale=1.0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, jnp.float32)


def map_coordinates_warp(image, flow):
  """Independent oracle: the same warp through jax.scipy.ndimage.map_coordinates."""
  h, w, c = image.shape
  flow_px = flow_to_pixels(flow)
  ys, xs = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing='ij')
  coords = [ys - flow_px[..., 1], xs - flow_px[..., 0]]
  return jnp.stack([ndimage.map_coordinates(image[..., i], coords, order=1, mode='constant',
                                            cval=0.0) for i in range(c)], axis=-1)


def test_zero_flow_is_exactly_the_identity():
  image = _random((2, 3, 9, 13, 3), 0)
  out = warp(image, jnp.zeros((2, 3, 9, 13, 2)))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


def test_integer_shift_moves_pixels_and_brings_in_zeros():
  image = _random((1, 8, 10, 2), 1)
  # A flow of +2 pixels in x and -1 in y: out(y, x) = image(y + 1, x - 2).
  flow = pixels_to_flow(jnp.broadcast_to(jnp.array([2.0, -1.0]), (1, 8, 10, 2)))
  out = np.asarray(warp(image, flow))
  expected = np.zeros_like(np.asarray(image))
  expected[:, :-1, 2:] = np.asarray(image)[:, 1:, :-2]
  np.testing.assert_allclose(out, expected, atol=1e-5)


def test_matches_published_warp_fixture():
  ref = parity.reference('w_mask')
  out = warp(jnp.asarray(ref['warp_image']), jnp.asarray(ref['warp_flow']))
  # PyTorch's own fp32 grid_sample is 1.3e-5 from an exact float64 warp; we reach 1.4e-5.
  np.testing.assert_allclose(np.asarray(out), ref['warp_out'], rtol=0, atol=5e-5)


def test_matches_map_coordinates_oracle():
  image = _random((2, 12, 16, 3), 2)
  flow = _random((2, 12, 16, 2), 3, scale=0.3)  # Up to a few pixels, some leaving the image.
  ours = warp(image, flow)
  oracle = jax.vmap(map_coordinates_warp)(image, flow)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(oracle), atol=1e-5)


def test_gradients_to_image_and_flow():
  with jax.enable_x64(True):
    image = _random((2, 6, 7, 2), 4).astype(jnp.float64)
    flow = _random((2, 6, 7, 2), 5, scale=0.2).astype(jnp.float64)
    check_grads(warp, (image, flow), order=1, modes=('fwd', 'rev'), eps=1e-6)
    grad_flow = jax.grad(lambda f: jnp.sum(warp(image, f) ** 2))(flow)
    assert float(jnp.abs(grad_flow).max()) > 0


def test_works_under_jit_and_vmap():
  image = _random((3, 8, 8, 1), 6)
  flow = _random((3, 8, 8, 2), 7, scale=0.2)
  eager = warp(image, flow)
  np.testing.assert_allclose(np.asarray(jax.jit(warp)(image, flow)), np.asarray(eager),
                             atol=1e-6)
  np.testing.assert_allclose(np.asarray(jax.vmap(warp)(image, flow)), np.asarray(eager),
                             atol=1e-6)


def test_mismatched_shapes_are_a_clear_error():
  try:
    warp(jnp.zeros((2, 8, 8, 3)), jnp.zeros((2, 8, 9, 2)))
  except ValueError as e:
    assert 'do not match' in str(e)
  else:
    raise AssertionError('expected a ValueError')
