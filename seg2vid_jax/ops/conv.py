"""CPU convolutions: Winograd for wide 3x3 layers, per-tap matrix products for weight gradients.

XLA:CPU runs the forward pass and the input gradient of a convolution at 100-170 GFLOP/s, but
the weight gradient at 7-54 GFLOP/s on seg2vid's layers (3x3, 64-512 channels; ~160 GFLOP/s
matmul peak), and the weight gradients were half of a training step's time (docs/PERF.md).
The weight gradient of a stride-s convolution is, for every kernel tap t, one matrix product
of the correspondingly shifted (and strided) input with the output gradient:

    dW[t] = sum over batch and output positions of x_pad[s·p + t, :]^T g[p, :]    (C_in x C_out)

`conv_general_dilated` computes that with a `jax.custom_vjp` when the backend is the CPU (in a
single process) and the convolution is a plain one (channels last, explicit padding, no
dilation, no groups): the forward pass and the input gradient stay XLA's own convolution, only
the weight gradient changes. Wide 3x3 stride-1 layers (WINOGRAD_MIN_CHANNELS) run as
Winograd F(2x2, 3x3) instead (`ops.winograd`: 2.25x fewer multiplications, forward and both
gradients). On TPU and GPU, or for any other convolution, it is
`lax.conv_general_dilated` itself. It has that function's signature so that it plugs into
``flax.linen.Conv``. `compiler_options` goes with it: the XLA:CPU options under which the
jitted steps run fastest (Eigen's convolutions instead of YNNPACK's).
"""

import contextlib
import functools
import math

import jax
from jax import lax
import jax.numpy as jnp

from seg2vid_jax.ops import winograd


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


# 'auto': the CPU choices of this module (Winograd for wide 3x3 layers, per-tap weight
# gradients for the others, Eigen convolutions); 'direct': the same without Winograd; 'xla':
# XLA's own defaults (for comparison).
# The mode is a jit-cache-sensitive context: a function jitted once and traced in two modes
# gets two programs (with a plain global the second trace would hit the first's cache).
_MODES = ('auto', 'direct', 'xla')
_MODE = jax.make_user_context('auto')

# Winograd for 3x3 stride-1 layers with at least this many input and output channels: below
# it the transforms' memory traffic costs more than the products save (benchmarks/conv_layers.py).
WINOGRAD_MIN_CHANNELS = 128


def _checked(mode: str) -> str:
  if mode not in _MODES:
    raise ValueError(f'convolution mode must be one of {_MODES}, got {mode!r}')
  return mode


def set_mode(mode: str):
  """Chooses 'auto' (the CPU choices of this module), 'direct' (no Winograd) or 'xla' (XLA's
  defaults), for benchmarks and tests that compare them."""
  _MODE.set_global(_checked(mode))


@contextlib.contextmanager
def using_mode(mode: str):
  """`set_mode(mode)` inside the block, the previous mode after it (functions traced inside
  the block keep the mode's convolutions; a jitted function called in another mode is traced
  again)."""
  with _MODE(_checked(mode)):
    yield


def _cpu_choices_apply():
  """Whether this module's CPU choices apply: mode not 'xla', CPU backend, a single process.

  With several processes, XLA:CPU's gloo collectives must run in the same order in every
  process; the gradient all-reduces inside the per-tap loops of independent layers can run
  concurrently, in a different order per process ("collective mismatch" in gloo, seen with
  launch/local_multiprocess.sh), so multi-process CPU runs keep XLA's own convolutions.
  """
  return (_MODE.value != 'xla' and jax.default_backend() == 'cpu'
          and jax.process_count() == 1)


def is_tapwise(padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
               ndim):
  """Whether a convolution takes the per-tap weight gradient: plain, channels last, on CPU
  in a single process."""
  if not _cpu_choices_apply() or feature_group_count != 1 or isinstance(padding, str):
    return False
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return False
  expected = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, _channels_last(ndim))
  return lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers) == expected


# XLA:CPU's YNNPACK library fusions kept: reductions only (pooling; without it max pooling's
# gradient is 10x slower here). Convolutions and matrix products go to Eigen.
_YNN_REDUCTIONS_ONLY = 'LIBRARY_FUSION_TYPE_REDUCE'


def compiler_options():
  """XLA options for the jitted steps: on CPU, convolutions and products through Eigen.

  XLA:CPU hands convolutions, matrix products and reductions to YNNPACK by default. On this
  model's shapes Eigen's convolutions are faster (forward and input gradient 101-153 -> 137-167
  GFLOP/s, 3x3 layers of 64-512 channels), and so are its matrix products on the long, thin
  per-tap weight gradients (64 x 262,144 x 64: 98-112 against 37 GFLOP/s) and Winograd's
  batched products: the published train step 1.14x and generation 1.23x faster than with
  YNNPACK's (benchmarks/train_step.py and generate.py --options); YNNPACK keeps the reductions
  (docs/PERF.md). None elsewhere: GPUs and TPUs keep their defaults.
  """
  if not _cpu_choices_apply():
    return None
  return {'xla_cpu_experimental_ynn_fusion_type': _YNN_REDUCTIONS_ONLY}


def is_winograd(rhs_shape, window_strides, padding):
  """Whether a plain (`is_tapwise`) convolution runs as Winograd F(2x2, 3x3): mode 'auto',
  a 3x3 kernel, stride 1, padding 1, and WINOGRAD_MIN_CHANNELS input and output channels."""
  return (_MODE.value == 'auto' and len(rhs_shape) == 4 and tuple(rhs_shape[:2]) == (3, 3)
          and tuple(window_strides) == (1, 1)
          and tuple(map(tuple, padding)) == ((1, 1), (1, 1))
          and min(rhs_shape[2:]) >= WINOGRAD_MIN_CHANNELS)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`, with Winograd or the per-tap weight gradient where they
  apply (CPU)."""
  if (batch_group_count == 1 and precision is None and preferred_element_type is None
      and is_tapwise(padding, lhs_dilation, rhs_dilation, dimension_numbers,
                     feature_group_count, lhs.ndim)):
    if is_winograd(rhs.shape, window_strides, padding):
      return winograd.conv3x3(lhs, rhs)
    return _conv_tapwise(lhs, rhs, tuple(window_strides), tuple(map(tuple, padding)))
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                  rhs_dilation, dimension_numbers, feature_group_count,
                                  batch_group_count, precision, preferred_element_type)
