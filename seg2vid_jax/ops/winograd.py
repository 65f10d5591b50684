"""Winograd convolutions: a 3x3, stride-1 convolution as batched matrix products.

A direct 3x3 convolution spends 9 multiplications per output per input and output channel;
Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", CVPR 2016) computes an m x m block of outputs from an (m + 2) x (m + 2) input tile
with (m + 2)^2 of them:

    Y = A^T [(G g G^T) ⊙ (B^T d B)] A

F(2x2, 3x3) (m = 2) does 16 per 4 outputs, 2.25x fewer than direct; F(4x4, 3x3) (m = 4) 36 per
16 outputs, 4x fewer. The elementwise product, summed over input channels, is one
(tiles x C_in) @ (C_in x C_out) matrix product per position of the tile, so the whole
convolution is (m + 2)^2 batched products plus linear transforms of the input tiles (B), the
kernel (G) and the outputs (A). Its gradients, which JAX derives by transposing these steps,
are again batched products (input: dM @ U^T, kernel: V^T @ dM), so the forward pass and both
gradients all save the same factor. F(2x2)'s coefficients are 0, ±1 and ±1/2, exact in binary
floating point: it differs from a direct convolution by float reordering only. F(4x4)'s
include 1/6 and 1/24 and amplify rounding (about 7x F(2x2)'s error in float32; 1e-12 in
float64).

This is for XLA:CPU: `ops.conv` chooses F(2x2) for wide layers on the CPU, where the products
run near the matmul peak. F(4x4) is slower there at every width (its transforms cost more than
its products save, docs/PERF.md) and is kept for `benchmarks/conv_layers.py` only. TPUs and
GPUs keep XLA's own convolutions.
"""

import numpy as np

import jax.numpy as jnp
from jax import lax

# (B^T, G, A^T) of F(m x m, 3x3) for output tiles m = 2 and 4 (Lavin & Gray, section 4).
_MATRICES = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
         [0, 1, -1, 8, -8, 1]]),
}


def _rows(x, axis, count, m):
  """x[m·i + k] along `axis` for k = 0..m+1 and i < count: the m + 2 rows of each tile.

  `x` has m·(count + 1) entries along `axis`; split into (count + 1, m) phases, the rows are
  contiguous slices of the phases (strided slices are several times slower on XLA:CPU).
  """
  phases = x.reshape(x.shape[:axis] + (count + 1, m) + x.shape[axis + 1:])
  cut = lambda k: lax.slice_in_dim(
      lax.index_in_dim(phases, k % m, axis + 1, keepdims=False), k // m, k // m + count,
      axis=axis)
  return [cut(k) for k in range(m + 2)]


def _combine(matrix, rows):
  """[sum_j matrix[i][j]·rows[j] for each row i], skipping zero coefficients."""
  def term(c, r):
    return r if c == 1 else -r if c == -1 else r * c
  out = []
  for coefficients in matrix:
    terms = [term(c, r) for c, r in zip(coefficients, rows) if c]
    out.append(sum(terms[1:], terms[0]))
  return out


def _kernel_transform(w, m):
  """U = G g G^T for a (3, 3, C_in, C_out) kernel, as ((m + 2)^2, C_in, C_out)."""
  g = jnp.asarray(np.asarray(_MATRICES[m][1]), w.dtype)
  u = jnp.einsum('ak,bl,klio->abio', g, g, w, precision=lax.Precision.HIGHEST)
  return u.reshape(((m + 2) ** 2,) + w.shape[2:])


def conv3x3(x, w, tile: int = 2):
  """The 3x3 convolution of NHWC `x` with HWIO kernel `w`, stride 1, padding 1 ('SAME').

  Args:
    x: (N, H, W, C_in).
    w: (3, 3, C_in, C_out).
    tile: m, the output tile of F(m x m, 3x3): 2 or 4.

  Returns:
    (N, H, W, C_out), as `lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), ...)`.
  """
  n, h, wd, c_in = x.shape
  if w.shape[:3] != (3, 3, c_in):
    raise ValueError(f'conv3x3 needs a (3, 3, {c_in}, C_out) kernel, got {w.shape}')
  if tile not in _MATRICES:
    raise ValueError(f'Winograd tile must be one of {sorted(_MATRICES)}, got {tile}')
  m, a = tile, tile + 2
  b_t, _, a_t = _MATRICES[m]
  th, tw = -(-h // m), -(-wd // m)  # m x m output tiles (other sizes: padded, cut at the end).
  xp = jnp.pad(x, ((0, 0), (1, m * (th + 1) - h - 1), (1, m * (tw + 1) - wd - 1), (0, 0)))
  # Separable input transform: B^T along rows, then along columns: a^2 arrays (N, th, tw, C).
  v = [c for r in _combine(b_t, _rows(xp, 1, th, m)) for c in _combine(b_t, _rows(r, 2, tw, m))]
  v = jnp.stack(v).reshape(a * a, n * th * tw, c_in)
  prods = lax.dot_general(v, _kernel_transform(w, m).astype(x.dtype),
                          (((2,), (1,)), ((0,), (0,))),
                          preferred_element_type=jnp.promote_types(x.dtype, jnp.float32))
  prods = prods.reshape(a, a, n, th, tw, -1)
  # Output transform A^T M A: along rows, then columns.
  y = jnp.stack([jnp.stack(_combine(a_t, list(r)), axis=3)
                 for r in _combine(a_t, list(prods))], axis=2)  # (N, th, m, tw, m, C_out)
  return y.reshape(n, m * th, m * tw, -1)[:, :h, :wd].astype(x.dtype)
