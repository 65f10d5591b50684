"""The CPU convolution with per-tap weight gradients (`seg2vid_jax.ops.conv`) against XLA's."""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from seg2vid_jax.ops import conv

# (input spatial shape, kernel, stride, padding): every kind of convolution seg2vid has (3x3,
# 4x4 stride 2, 5x5 heads, 4x4 valid bottleneck, 3x3x3 over frames), plus odd sizes where the
# strided windows do not reach the end of the padded input.
CASES = [((9, 10), 3, 1, 1), ((9, 10), 4, 2, 1), ((8, 8), 5, 1, 2), ((4, 8), 4, 1, 0),
         ((9, 11), 4, 2, 2), ((4, 6, 7), 3, 1, 1)]


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


@pytest.mark.parametrize('spatial,kernel,stride,pad', CASES)
def test_weight_grad_matches_xla_in_float64(spatial, kernel, stride, pad):
  with jax.enable_x64(True):
    x = _random((2,) + spatial + (5,), 0)
    w = _random((kernel,) * len(spatial) + (5, 3), 1)
    strides, padding = (stride,) * len(spatial), ((pad, pad),) * len(spatial)
    y, xla_vjp = jax.vjp(lambda w: conv._plain_conv(x, w, strides, padding), w)
    g = _random(y.shape, 2)
    expected = xla_vjp(g)[0]
    ours = conv.weight_grad(x, g, w.shape, strides, padding)
  assert ours.shape == w.shape
  np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_flax_conv_gradients_match_lax():
  """Both gradients of an nn.Conv on the per-tap path equal those of plain lax, in fp32."""
  x = _random((2, 16, 12, 6), 3).astype(jnp.float32)

  def loss(params, x, fast):
    layer = nn.Conv(8, (4, 4), 2, padding=[(1, 1), (1, 1)],
                    conv_general_dilated=conv.conv_general_dilated if fast else None)
    return jnp.sum(jnp.tanh(layer.apply(params, x)) ** 2)

  params = nn.Conv(8, (4, 4), 2, padding=[(1, 1), (1, 1)]).init(jax.random.key(0), x)
  assert conv.is_tapwise([(1, 1), (1, 1)], None, None, ('NHWC', 'HWIO', 'NHWC'), 1, 4)
  fast = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(params, x, True)
  plain = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(params, x, False)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_bf16_weight_grad_is_accumulated_in_fp32_and_has_the_kernel_dtype():
  x = _random((2, 32, 32, 16), 4).astype(jnp.bfloat16)
  w = (0.1 * _random((3, 3, 16, 16), 5)).astype(jnp.bfloat16)
  dn = ('NHWC', 'HWIO', 'NHWC')
  grad = jax.grad(lambda w: jnp.sum(conv.conv_general_dilated(x, w, (1, 1), [(1, 1)] * 2,
                                                              dimension_numbers=dn)))(w)
  exact = jax.grad(lambda w: jnp.sum(lax.conv_general_dilated(
      x.astype(jnp.float32), w, (1, 1), [(1, 1)] * 2, dimension_numbers=dn)))(
          w.astype(jnp.float32))
  assert grad.dtype == jnp.bfloat16
  # Accumulated in fp32, the only error left is bf16's rounding of the result (2^-8).
  np.testing.assert_allclose(grad.astype(jnp.float32), exact, rtol=1e-2, atol=1e-2)


def test_only_plain_cpu_convolutions_take_the_per_tap_path():
  dn = ('NHWC', 'HWIO', 'NHWC')
  assert conv.is_tapwise([(1, 1)] * 2, None, None, dn, 1, 4)
  assert not conv.is_tapwise('SAME', None, None, dn, 1, 4)
  assert not conv.is_tapwise([(1, 1)] * 2, (2, 2), None, dn, 1, 4)
  assert not conv.is_tapwise([(1, 1)] * 2, None, (2, 2), dn, 1, 4)
  assert not conv.is_tapwise([(1, 1)] * 2, None, None, dn, 2, 4)
  assert not conv.is_tapwise([(1, 1)] * 2, None, None, ('NCHW', 'OIHW', 'NCHW'), 1, 4)
  with conv.using_mode('xla'):
    assert not conv.is_tapwise([(1, 1)] * 2, None, None, dn, 1, 4)
  with pytest.raises(ValueError, match='tapwise'):
    conv.set_mode('tapwise')


def test_compiler_options_move_convolutions_and_products_off_ynnpack_with_the_same_result():
  options = conv.compiler_options()
  assert options == {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_REDUCE'}
  x = _random((2, 32, 32, 64), 6).astype(jnp.float32)
  w = (0.1 * _random((3, 3, 64, 64), 7)).astype(jnp.float32)
  f = lambda x, w: conv._plain_conv(x, w, (1, 1), ((1, 1), (1, 1)))
  default = jax.jit(f).lower(x, w).compile()
  eigen = jax.jit(f, compiler_options=options).lower(x, w).compile()
  assert 'ynn_fusion' in default.as_text() and 'ynn_fusion' not in eigen.as_text()
  np.testing.assert_allclose(eigen(x, w), default(x, w), rtol=1e-5, atol=1e-5)
  a, b = _random((64, 4096), 8).astype(jnp.float32), _random((4096, 64), 9).astype(jnp.float32)
  default, eigen = (jax.jit(jnp.matmul, compiler_options=o).lower(a, b).compile()
                    for o in (None, options))
  assert 'ynn_fusion' in default.as_text() and 'ynn_fusion' not in eigen.as_text()
  np.testing.assert_allclose(eigen(a, b), default(a, b), rtol=1e-4, atol=1e-3)
  with conv.using_mode('xla'):
    assert conv.compiler_options() is None
