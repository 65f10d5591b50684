"""Building blocks: PyTorch-semantics BatchNorm and bilinear x2 upsampling."""

import jax
import jax.numpy as jnp
import numpy as np

from seg2vid_jax.models import layers


def test_upsample2x_matches_half_pixel_bilinear_resize():
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 7, 3)), jnp.float32)
  ours = layers.upsample2x(x)
  # jax.image.resize upsampling is half-pixel bilinear with edge renormalisation = clamping.
  oracle = jax.image.resize(x, (2, 10, 14, 3), 'bilinear')
  np.testing.assert_allclose(np.asarray(ours), np.asarray(oracle), atol=1e-6)
  # Corners are copied exactly, as in PyTorch (align_corners=False clamps at the edge).
  np.testing.assert_allclose(np.asarray(ours[:, 0, 0]), np.asarray(x[:, 0, 0]), atol=1e-7)


def test_batchnorm_running_statistics_follow_pytorch():
  bn = layers.BatchNorm()
  x = jnp.asarray(np.random.default_rng(1).standard_normal((3, 2, 2, 4)) * 2 + 1, jnp.float32)
  variables = bn.init(jax.random.key(0), x, train=True)
  y, state = bn.apply(variables, x, train=True, mutable=['batch_stats'])
  flat = np.asarray(x).reshape(-1, 4)
  np.testing.assert_allclose(np.asarray(state['batch_stats']['mean']), 0.1 * flat.mean(0),
                             rtol=1e-5)
  # Unbiased variance (n - 1) in the running estimate, biased in the normalisation.
  np.testing.assert_allclose(np.asarray(state['batch_stats']['var']),
                             0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
  expected = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
  np.testing.assert_allclose(np.asarray(y).reshape(-1, 4), expected, atol=1e-5)


def test_grouped_batchnorm_equals_sequential_calls():
  """groups=K normalises each slice on its own and updates the running stats K times."""
  x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 3, 3, 2)), jnp.float32)
  grouped = layers.BatchNorm(groups=2)
  variables = grouped.init(jax.random.key(0), x, train=True)
  y, state = grouped.apply(variables, x, train=True, mutable=['batch_stats'])
  single = layers.BatchNorm()
  y0, s0 = single.apply(variables, x[:2], train=True, mutable=['batch_stats'])
  y1, s1 = single.apply({'params': variables['params'], **s0}, x[2:], train=True,
                        mutable=['batch_stats'])
  np.testing.assert_allclose(np.asarray(y), np.concatenate([y0, y1]), atol=1e-6)
  for name in ('mean', 'var'):
    np.testing.assert_allclose(np.asarray(state['batch_stats'][name]),
                               np.asarray(s1['batch_stats'][name]), atol=1e-6)


def test_chw_rows_round_trip_in_pytorch_order():
  x = jnp.arange(2 * 2 * 4 * 8, dtype=jnp.float32).reshape(2, 2, 4, 8)  # NHWC
  rows = layers.chw_rows(x, 16)
  assert rows.shape == (2, 4, 16)
  # Row 0 of clip 0 is channel 0 then channel 1 (C,H,W order), 8 pixels each.
  np.testing.assert_array_equal(np.asarray(rows[0, 0, :8]),
                                np.asarray(x[0, :, :, 0]).reshape(-1))
  np.testing.assert_array_equal(np.asarray(layers.rows_to_nhwc(rows, (8, 2, 4))), np.asarray(x))
