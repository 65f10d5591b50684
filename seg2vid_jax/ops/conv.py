"""A convolution whose weight gradient is a sum of per-tap matrix products on the CPU.

XLA:CPU runs the forward pass and the input gradient of a convolution near the matmul peak,
but the weight gradient near 22 GFLOP/s out of ~185 (`spec/CPU_PERF.md`), and the weight
gradients are most of a training step's time. The weight gradient of a stride-s convolution
is, for every kernel tap t, one matrix product of the correspondingly shifted (and strided)
input with the output gradient:

    dW[t] = sum over batch and output positions of x_pad[s·p + t, :]^T g[p, :]    (C_in x C_out)

`conv_general_dilated` computes that with a `jax.custom_vjp` when the backend is the CPU and
the convolution is a plain one (channels last, explicit padding, no dilation, no groups): the
forward pass and the input gradient stay XLA's own convolution, only the weight gradient
changes. On TPU and GPU, or for any other convolution, it is `lax.conv_general_dilated`
itself. It has that function's signature so that it plugs into ``flax.linen.Conv``.
"""

import functools
import math

import jax
from jax import lax
import jax.numpy as jnp


def _channels_last(ndim):
  """Dimension numbers of an N-d channels-last convolution (NHWC, HWIO, NHWC)."""
  spatial = ''.join('DHW'[3 - (ndim - 2):])
  return (f'N{spatial}C', f'{spatial}IO', f'N{spatial}C')


def _plain_conv(x, w, strides, padding):
  return lax.conv_general_dilated(x, w, strides, padding,
                                  dimension_numbers=_channels_last(x.ndim))


def weight_grad(x, g, kernel_shape, strides, padding):
  """Gradient of a channels-last convolution's kernel, as one matrix product per tap.

  The taps run one after the other in a `lax.fori_loop`, so that only one shifted window of
  the input exists at a time (unrolled, XLA:CPU keeps all of them alive: 9x the input for a
  3x3 kernel). Strided windows become unit-stride ones by splitting each padded spatial axis
  into (rows, stride) phases: padded position s·q + r is phase r, row q, and the tap at offset
  s·q + r is rows [q, q + n) of phase r. The output gradient is transposed once, to (C_out, M),
  which is the operand layout XLA:CPU multiplies fastest.

  Args:
    x: the input (N, *spatial, C_in).
    g: the gradient of the output (N, *out_spatial, C_out).
    kernel_shape: (*window, C_in, C_out).
    strides: one stride per spatial dimension.
    padding: one (low, high) pair per spatial dimension.

  Returns:
    The kernel gradient, accumulated in float32 (or float64 for float64 inputs).
  """
  window, (c_in, c_out) = kernel_shape[:-2], kernel_shape[-2:]
  out_spatial = g.shape[1:-1]
  rows = [(k - 1) // s + n for k, s, n in zip(window, strides, out_spatial)]
  config = [(0, 0, 0)] + [(lo, s * q - n - lo, 0) for (lo, _), s, q, n
                          in zip(padding, strides, rows, x.shape[1:-1])] + [(0, 0, 0)]
  phased = lax.pad(x, jnp.zeros((), x.dtype), config).reshape(
      (x.shape[0],) + tuple(d for q, s in zip(rows, strides) for d in (q, s)) + (c_in,))
  g_t = g.reshape(-1, c_out).T
  accumulate = jnp.promote_types(x.dtype, jnp.float32)
  sizes = (x.shape[0],) + tuple(d for n in out_spatial for d in (n, 1)) + (c_in,)

  def tap(t, grads):
    offsets = jnp.unravel_index(t, window)
    start = [0] + [i for o, s in zip(offsets, strides) for i in (o // s, o % s)] + [0]
    shifted = lax.dynamic_slice(phased, start, sizes).reshape(-1, c_in)
    product = lax.dot(g_t, shifted, preferred_element_type=accumulate)
    return lax.dynamic_update_slice(grads, product[None], (t, 0, 0))

  taps = math.prod(window)
  grads = lax.fori_loop(0, taps, tap, jnp.zeros((taps, c_out, c_in), accumulate))
  return jnp.swapaxes(grads, 1, 2).reshape(kernel_shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_tapwise(x, w, strides, padding):
  return _plain_conv(x, w, strides, padding)


def _conv_tapwise_fwd(x, w, strides, padding):
  return _plain_conv(x, w, strides, padding), (x, w)


def _conv_tapwise_bwd(strides, padding, residuals, g):
  x, w = residuals
  _, input_vjp = jax.vjp(lambda x: _plain_conv(x, w, strides, padding), x)
  (dx,) = input_vjp(g)
  return dx, weight_grad(x, g, w.shape, strides, padding).astype(w.dtype)


_conv_tapwise.defvjp(_conv_tapwise_fwd, _conv_tapwise_bwd)


# 'auto': per-tap weight gradients on the CPU backend; 'xla': always XLA's own (for comparison).
_MODE = {'weight_grad': 'auto'}


def set_weight_grad(mode: str):
  """Chooses the weight gradient: 'auto' (per-tap on CPU) or 'xla' (XLA's, e.g. to compare)."""
  if mode not in ('auto', 'xla'):
    raise ValueError(f"weight_grad mode must be 'auto' or 'xla', got {mode!r}")
  _MODE['weight_grad'] = mode


def is_tapwise(padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
               ndim):
  """Whether a convolution takes the per-tap weight gradient: plain, channels last, on CPU."""
  if (_MODE['weight_grad'] != 'auto' or jax.default_backend() != 'cpu'
      or feature_group_count != 1 or isinstance(padding, str)):
    return False
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return False
  expected = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, _channels_last(ndim))
  return lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers) == expected


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, with the per-tap weight gradient where it applies (CPU)."""
  if (batch_group_count == 1 and precision is None and preferred_element_type is None
      and is_tapwise(padding, lhs_dilation, rhs_dilation, dimension_numbers,
                     feature_group_count, lhs.ndim)):
    return _conv_tapwise(lhs, rhs, tuple(window_strides), tuple(map(tuple, padding)))
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type)
