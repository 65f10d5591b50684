"""Winograd F(2x2, 3x3) and F(4x4, 3x3) (`seg2vid_jax.ops.winograd`) against XLA's direct
convolution."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from seg2vid_jax.ops import conv, winograd

DN = ('NHWC', 'HWIO', 'NHWC')


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def _direct(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN,
                                  precision=lax.Precision.HIGHEST)


@pytest.mark.parametrize('tile', [2, 4])
@pytest.mark.parametrize('height,width', [(8, 8), (7, 9), (1, 2), (5, 6), (13, 3)])
def test_winograd_and_its_gradients_match_the_direct_convolution_in_float64(height, width,
                                                                            tile):
  """Forward, input and kernel gradients to 1e-12: the same result up to rounding (sizes
  that are not multiples of the tile exercise the padded last tile)."""
  with jax.enable_x64(True):
    x, w = _random((2, height, width, 5), 0), _random((3, 3, 5, 4), 1)
    g = _random((2, height, width, 4), 2)
    ours, ours_vjp = jax.vjp(lambda x, w: winograd.conv3x3(x, w, tile), x, w)
    expected, expected_vjp = jax.vjp(_direct, x, w)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)
    for a, b in zip(ours_vjp(g), expected_vjp(g)):
      np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('tile,atol', [(2, 1e-5), (4, 1e-4)])
def test_winograd_in_float32_is_within_float_rounding(tile, atol):
  """Outputs of about unit size: F(2x2) within a few ulps of 128·9 products, F(4x4) (whose
  transforms amplify rounding) within 10x that."""
  x = _random((2, 16, 16, 128), 3).astype(jnp.float32)
  w = (_random((3, 3, 128, 128), 4) / np.sqrt(9 * 128)).astype(jnp.float32)
  np.testing.assert_allclose(winograd.conv3x3(x, w, tile), _direct(x, w), rtol=0, atol=atol)


def test_winograd_rejects_other_kernels_and_tiles():
  with pytest.raises(ValueError, match=r'\(3, 3, 4, C_out\) kernel, got \(5, 5, 4, 2\)'):
    winograd.conv3x3(jnp.zeros((1, 4, 4, 4)), jnp.zeros((5, 5, 4, 2)))
  with pytest.raises(ValueError, match='tile must be one of \\[2, 4\\], got 3'):
    winograd.conv3x3(jnp.zeros((1, 4, 4, 4)), jnp.zeros((3, 3, 4, 2)), tile=3)


def test_only_wide_3x3_stride_1_layers_take_winograd():
  assert conv.is_winograd((3, 3, 128, 256), (1, 1), [(1, 1), (1, 1)])
  assert not conv.is_winograd((3, 3, 64, 256), (1, 1), [(1, 1), (1, 1)])
  assert not conv.is_winograd((3, 3, 128, 128), (2, 2), [(1, 1), (1, 1)])
  assert not conv.is_winograd((3, 3, 128, 128), (1, 1), [(0, 0), (0, 0)])
  assert not conv.is_winograd((4, 4, 128, 128), (1, 1), [(1, 1), (1, 1)])
  assert not conv.is_winograd((3, 3, 3, 128, 128), (1, 1, 1), [(1, 1)] * 3)
  for mode in ('direct', 'xla'):
    with conv.using_mode(mode):
      assert not conv.is_winograd((3, 3, 128, 256), (1, 1), [(1, 1), (1, 1)])
  assert conv.is_winograd((3, 3, 128, 256), (1, 1), [(1, 1), (1, 1)])  # Restored.


def test_model_convolution_takes_winograd_and_matches_xla():
  """`conv.conv_general_dilated` on a wide layer: Winograd in the jaxpr (batched products, no
  convolution), the same values and gradients as XLA's convolution."""
  x = _random((2, 8, 8, 128), 5).astype(jnp.float32)
  w = (_random((3, 3, 128, 128), 6) / 34).astype(jnp.float32)
  f = lambda x, w: jnp.sum(jnp.tanh(conv.conv_general_dilated(
      x, w, (1, 1), [(1, 1), (1, 1)], dimension_numbers=DN)))
  jaxpr = str(jax.make_jaxpr(f)(x, w))
  assert 'conv_general_dilated' not in jaxpr and 'dot_general' in jaxpr
  plain = lambda x, w: jnp.sum(jnp.tanh(_direct(x, w)))
  np.testing.assert_allclose(f(x, w), plain(x, w), rtol=1e-5)
  for a, b in zip(jax.grad(f, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=5e-5)


def test_one_jitted_function_traced_in_two_modes_gives_two_programs():
  """The mode is part of jit's cache key: a benchmark that jits once and lowers in 'auto' and
  then 'direct' gets Winograd and then a convolution (a plain global once gave it Winograd
  twice)."""
  x = jnp.zeros((1, 8, 8, 128), jnp.float32)
  w = jnp.zeros((3, 3, 128, 128), jnp.float32)
  f = jax.jit(lambda x, w: conv.conv_general_dilated(x, w, (1, 1), [(1, 1), (1, 1)],
                                                     dimension_numbers=DN))
  programs = {}
  for mode in ('auto', 'direct', 'auto'):
    with conv.using_mode(mode):
      programs.setdefault(mode, set()).add(f.lower(x, w).as_text())
  assert len(programs['auto']) == 1 and len(programs['direct']) == 1
  assert 'convolution' not in programs['auto'].pop() and 'convolution' in programs['direct'].pop()


def test_winograd_in_bfloat16_multiplies_in_bf16_and_accumulates_in_float32():
  x = _random((2, 8, 8, 128), 7).astype(jnp.bfloat16)
  w = (_random((3, 3, 128, 128), 8) / 34).astype(jnp.bfloat16)
  jaxpr = jax.make_jaxpr(winograd.conv3x3)(x, w).jaxpr
  (dot,) = [e for e in jaxpr.eqns  # The 16 batched products (the other is the kernel's G g G^T).
            if e.primitive.name == 'dot_general' and e.invars[0].aval.shape[0] == 16]
  assert [str(v.aval.dtype) for v in dot.invars] == ['bfloat16', 'bfloat16']
  assert str(dot.outvars[0].aval.dtype) == 'float32'
  y = winograd.conv3x3(x, w)
  assert y.dtype == jnp.bfloat16
  exact = _direct(x.astype(jnp.float32), w.astype(jnp.float32))
  np.testing.assert_allclose(y.astype(jnp.float32), exact, rtol=2e-2, atol=5e-2)
