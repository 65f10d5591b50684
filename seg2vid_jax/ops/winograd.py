"""Winograd F(2x2, 3x3) convolution: a 3x3, stride-1 convolution as 16 batched matrix products.

A direct 3x3 convolution multiplies each 2x2 block of outputs with 9·4 = 36 products per input
and output channel; Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016) computes the same block from a 4x4 input tile with
16, 2.25x fewer:

    Y = A^T [(G g G^T) ⊙ (B^T d B)] A

The elementwise product, summed over input channels, is one (tiles x C_in) @ (C_in x C_out)
matrix product per position of the 4x4 tile, so the whole convolution is 16 batched products
plus cheap linear transforms of the input tiles (B), the kernel (G) and the outputs (A). Its
gradients, which JAX derives by transposing these steps, are again 16 batched products each
(input: dM @ U^T, kernel: V^T @ dM), so the forward pass and both gradients all do 2.25x fewer
multiplications. The transforms' coefficients are 0, ±1 and ±1/2, exact in binary floating
point; results differ from a direct convolution by float reordering only (a few ulps).

This is for XLA:CPU (`ops.conv` chooses it for wide layers on the CPU): there the products run
near the matmul peak, while its direct convolutions cannot go faster than the peak. TPUs and
GPUs keep XLA's own convolutions.
"""

import jax.numpy as jnp
from jax import lax


def _rows(x, axis, count):
  """x[2i + k] along `axis` for k = 0..3 and i < count: the four rows of each 4-row tile.

  `x` has 2·count + 2 entries along `axis`; split into (count + 1, 2) pairs, the rows are
  contiguous slices of the even and odd entries (strided slices are several times slower on
  XLA:CPU).
  """
  pairs = x.reshape(x.shape[:axis] + (count + 1, 2) + x.shape[axis + 1:])
  even, odd = (lax.index_in_dim(pairs, p, axis + 1, keepdims=False) for p in (0, 1))
  cut = lambda a, start: lax.slice_in_dim(a, start, start + count, axis=axis)
  return [cut(even, 0), cut(odd, 0), cut(even, 1), cut(odd, 1)]


def _input_transform(d):
  """B^T d along the axis that `d` (its four rows) was cut from."""
  return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _kernel_transform(w):
  """U = G g G^T for a (3, 3, C_in, C_out) kernel, as (16, C_in, C_out)."""
  g = jnp.asarray([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]],
                  w.dtype)
  u = jnp.einsum('ak,bl,klio->abio', g, g, w, precision=lax.Precision.HIGHEST)
  return u.reshape((16,) + w.shape[2:])


def conv3x3(x, w):
  """The 3x3 convolution of NHWC `x` with HWIO kernel `w`, stride 1, padding 1 ('SAME').

  Args:
    x: (N, H, W, C_in).
    w: (3, 3, C_in, C_out).

  Returns:
    (N, H, W, C_out), as `lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), ...)`.
  """
  n, h, wd, c_in = x.shape
  if w.shape[:3] != (3, 3, c_in):
    raise ValueError(f'conv3x3 needs a (3, 3, {c_in}, C_out) kernel, got {w.shape}')
  th, tw = -(-h // 2), -(-wd // 2)  # 2x2 output tiles (odd sizes: padded, cut at the end).
  xp = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - wd), (0, 0)))
  # Separable input transform: B^T along rows, then along columns: 16 arrays (N, th, tw, C).
  v = [b for a in _input_transform(_rows(xp, 1, th))
       for b in _input_transform(_rows(a, 2, tw))]
  v = jnp.stack(v).reshape(16, n * th * tw, c_in)
  m = lax.dot_general(v, _kernel_transform(w).astype(x.dtype), (((2,), (1,)), ((0,), (0,))),
                      preferred_element_type=jnp.promote_types(x.dtype, jnp.float32))
  m = m.reshape(4, 4, n, th, tw, -1)
  # Output transform A^T m A: rows (o0 = m0 + m1 + m2, o1 = m1 - m2 - m3), then columns.
  rows = [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]
  y = jnp.stack([jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], axis=3) for r in rows],
                axis=2)  # (N, th, 2, tw, 2, C_out)
  return y.reshape(n, 2 * th, 2 * tw, -1)[:, :h, :wd].astype(x.dtype)
