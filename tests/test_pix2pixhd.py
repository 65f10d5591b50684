"""Stage 1 (label map -> first frame): pix2pixHD's networks and objective."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seg2vid_jax.losses import img2img as L
from seg2vid_jax import vgg_weights
from seg2vid_jax.models import VGG19Features
from seg2vid_jax.models import pix2pixhd as P

NUM_CLASSES = 20
# A narrow configuration for CPU tests.
TINY_G = dict(ngf=8, n_downsampling=2, n_blocks=2, use_instance_edges=True)
TINY_D = dict(num_D=2, ndf=8, n_layers=2)
SIZE = 32


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def conv_params(k, cin, cout):
  """Weights and bias of one k x k convolution (or transposed convolution)."""
  return k * k * cin * cout + cout


def published_generator_count(cin, cout=3, ngf=64, n_down=4, n_blocks=9):
  total = conv_params(7, cin, ngf)
  total += sum(conv_params(3, ngf * 2 ** i, ngf * 2 ** (i + 1)) for i in range(n_down))
  total += n_blocks * 2 * conv_params(3, ngf * 2 ** n_down, ngf * 2 ** n_down)
  total += sum(conv_params(3, ngf * 2 ** (i + 1), ngf * 2 ** i) for i in range(n_down))
  return total + conv_params(7, ngf, cout)


def published_discriminator_count(cin, num_d=3, ndf=64, n_layers=3):
  widths = [cin] + [min(ndf * 2 ** i, 512) for i in range(n_layers + 1)] + [1]
  return num_d * sum(conv_params(4, a, b) for a, b in zip(widths[:-1], widths[1:]))


def test_published_parameter_counts_for_20_classes_plus_edges():
  gen, disc = P.GlobalGenerator(use_instance_edges=True), P.MultiscaleDiscriminator()
  labels, ids, image = P.example_inputs(NUM_CLASSES, (64, 64), 1, True)
  g = jax.eval_shape(lambda: gen.init(jax.random.key(0), labels, ids))['params']
  d = jax.eval_shape(lambda: disc.init(jax.random.key(0), P.conditioning(labels, ids),
                                       image))['params']
  assert count(g) == published_generator_count(21) == 182_499_715
  assert count(d) == published_discriminator_count(24) == 8_358_723
  assert sorted(d) == ['scale0', 'scale1', 'scale2']
  # Widths double up to 512 and stay there (ndf 256: 256, 512, 512, 512).
  wide = jax.eval_shape(lambda: P.NLayerDiscriminator(ndf=256).init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 4))))['params']
  assert [wide[f'model{j}_0']['kernel'].shape[-1] for j in range(5)] == [256, 512, 512, 512, 1]


def random_batch(key, batch=2, size=SIZE):
  k1, k2, k3 = jax.random.split(key, 3)
  labels = jax.random.randint(k1, (batch, size, size), 0, NUM_CLASSES)
  return dict(label_onehot=jax.nn.one_hot(labels, NUM_CLASSES),
              instance_ids=jax.random.randint(k2, (batch, size, size), 0, 3),
              image=jax.random.uniform(k3, (batch, size, size, 3)))


@functools.lru_cache(maxsize=None)
def tiny():
  gen, disc = P.GlobalGenerator(**TINY_G), P.MultiscaleDiscriminator(**TINY_D)
  gen_vars, disc_vars = P.init_variables(gen, disc, jax.random.key(0), NUM_CLASSES,
                                         (SIZE, SIZE), 2)
  return gen, disc, gen_vars['params'], disc_vars['params']


def test_generator_output_shape_range_and_tanh_mapping():
  gen, _, params, _ = tiny()
  batch = random_batch(jax.random.key(1))
  apply = jax.jit(lambda p, b: gen.apply({'params': p}, b['label_onehot'], b['instance_ids']))
  out = np.asarray(apply(params, batch))
  assert out.shape == (2, SIZE, SIZE, 3)
  assert np.all(out >= 0) and np.all(out <= 1) and out.std() > 0
  # Different label maps give different images.
  other = apply(params, random_batch(jax.random.key(2)))
  assert np.abs(out - np.asarray(other)).mean() > 1e-4
  # The last layer is c7s1-3 + tanh mapped to [0, 1]: a zero kernel and bias b give
  # (tanh(b) + 1) / 2 everywhere.
  last = f'model_{4 + 3 * 2 + 2 + 3 * 2 + 1}'
  assert last in params
  bias = jnp.array([-1.0, 0.0, 2.0])
  zeroed = flax.core.copy(params, {last: dict(kernel=jnp.zeros_like(params[last]['kernel']),
                                              bias=bias)})
  np.testing.assert_allclose(apply(zeroed, batch),
                             np.broadcast_to((np.tanh(bias) + 1) / 2, out.shape), atol=1e-6)


def test_generator_input_checks():
  gen, _, params, _ = tiny()
  batch = random_batch(jax.random.key(1), size=SIZE + 2)
  with pytest.raises(ValueError, match='multiples of 4'):
    gen.apply({'params': params}, batch['label_onehot'], batch['instance_ids'])
  with pytest.raises(ValueError, match='instance_ids'):
    gen.apply({'params': params}, batch['label_onehot'])


def test_instance_edges_on_a_toy_id_map():
  ids = np.array([[1, 1, 1, 1],
                  [1, 1, 1, 1],
                  [1, 1, 2, 2],
                  [1, 1, 2, 2]])
  expected = np.array([[0, 0, 0, 0],
                       [0, 0, 1, 1],
                       [0, 1, 1, 1],
                       [0, 1, 1, 0]], np.float32)
  edges = P.instance_edges(jnp.asarray(ids)[None])
  assert edges.shape == (1, 4, 4, 1) and edges.dtype == jnp.float32
  np.testing.assert_array_equal(edges[0, ..., 0], expected)
  labels = jnp.ones((1, 4, 4, 2))
  cond = P.conditioning(labels, jnp.asarray(ids)[None])
  np.testing.assert_array_equal(cond[0, ..., 2], expected)
  assert P.conditioning(labels) is labels


def test_instance_norm_normalises_each_sample_and_channel():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 6, 3)) * np.array([1.0, 3.0, 0.1]) + np.array([5.0, -2.0, 0.0])
  y = np.asarray(P.instance_norm(jnp.asarray(x, jnp.float32)))
  mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(y.var(axis=(1, 2)), (var / (var + 1e-5))[:, 0, 0], rtol=1e-4)


def np_conv(x, kernel, bias, stride=1):
  """Direct (N, H, W, Cin) x (k, k, Cin, Cout) correlation, no padding."""
  k = kernel.shape[0]
  h = (x.shape[1] - k) // stride + 1
  w = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], h, w, kernel.shape[-1]))
  for i in range(h):
    for j in range(w):
      patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k]
      out[:, i, j] = np.einsum('nhwc,hwcd->nd', patch, kernel) + bias
  return out


def np_instance_norm(x):
  return (x - x.mean((1, 2), keepdims=True)) / np.sqrt(x.var((1, 2), keepdims=True) + 1e-5)


def test_reflection_padding_and_residual_block_against_numpy():
  # PyTorch's ReflectionPad2d(2) of the row 0 1 2 3 is 2 1 0 1 2 3 2 1.
  row = jnp.arange(4.0).reshape(1, 1, 4, 1)
  padded = P.reflection_pad(jnp.tile(row, (1, 4, 1, 1)), 2)
  np.testing.assert_array_equal(padded[0, 0, :, 0], [2, 1, 0, 1, 2, 3, 2, 1])
  x = np.random.default_rng(0).normal(size=(1, 5, 5, 2)).astype(np.float32)
  block = P.ResnetBlock()
  params = block.init(jax.random.key(0), x)['params']
  p = jax.tree.map(np.asarray, params)
  pad = lambda a: np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
  y = np.maximum(np_instance_norm(np_conv(pad(x), **p['conv_block_1'])), 0)
  y = x + np_instance_norm(np_conv(pad(y), **p['conv_block_5']))
  np.testing.assert_allclose(block.apply({'params': params}, x), y, rtol=1e-4, atol=1e-4)


def test_upconv_is_pytorch_conv_transpose_exact_x2():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
  weight = rng.normal(size=(2, 5, 3, 3))  # PyTorch ConvTranspose2d layout (in, out, kh, kw).
  bias = rng.normal(size=(5,))
  # out[2i - 1 + ky, 2j - 1 + kx] += x[i, j] . W[:, :, ky, kx], cropped to (2H, 2W): padding
  # 1 removes one row before, output_padding 1 adds one after.
  full = np.zeros((1, 2 * 3 + 1, 2 * 4 + 1, 5))
  for i in range(3):
    for j in range(4):
      for ky in range(3):
        for kx in range(3):
          full[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ weight[:, :, ky, kx]
  expected = full[:, 1:, 1:] + bias
  kernel = np.transpose(weight, (2, 3, 1, 0))
  out = P.upconv(5).apply({'params': dict(kernel=kernel, bias=bias)}, x)
  assert out.shape == (1, 6, 8, 5)
  np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_downsample_averages_only_in_image_pixels():
  x = np.arange(25.0).reshape(1, 5, 5, 1)
  y = np.asarray(P.downsample(jnp.asarray(x)))[0, ..., 0]
  assert y.shape == (3, 3)
  assert y[0, 0] == np.mean(x[0, :2, :2])  # count_include_pad=False: 4 pixels, not 9.
  assert y[1, 1] == np.mean(x[0, 1:4, 1:4])
  assert y[2, 2] == np.mean(x[0, 3:, 3:])


def test_discriminator_features_per_scale():
  _, disc, _, params = tiny()
  batch = random_batch(jax.random.key(3))
  cond = P.conditioning(batch['label_onehot'], batch['instance_ids'])
  outs = jax.jit(lambda p: disc.apply({'params': p}, cond, batch['image']))(params)
  assert len(outs) == TINY_D['num_D']
  widths = [8, 16, 32, 1]
  # 4x4 convolutions padded by 2: stride 2 gives n // 2 + 1, stride 1 adds one pixel.
  for scale, (size, sizes) in enumerate([(SIZE, [17, 9, 10, 11]), (SIZE // 2, [9, 5, 6, 7])]):
    assert [o.shape for o in outs[scale]] == [(2, s, s, w) for s, w in zip(sizes, widths)]
    assert sizes[-1] == P.discriminator_output_size(size, TINY_D['n_layers'])
  # Result 1 is 'scale0' applied to the average-pooled input, as pix2pixHD.
  x = jnp.concatenate([cond, batch['image']], axis=-1)
  coarse = P.NLayerDiscriminator(8, 2).apply({'params': params['scale0']}, P.downsample(x))
  for a, b in zip(coarse, outs[1]):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_lsgan_losses():
  ones, zeros = jnp.ones((2, 5, 5, 1)), jnp.zeros((2, 3, 3, 1))
  # Perfect discriminator: no loss for D; the generator pays 1 per scale.
  real = [[jnp.full((2, 4, 4, 8), 7.0), ones], [ones]]  # Feature lists or bare predictions.
  fake = [[jnp.full((2, 4, 4, 8), 7.0), zeros], [zeros]]
  assert L.lsgan_d_loss(real, fake) == 0
  assert L.lsgan_g_loss(fake) == 2.0
  assert L.lsgan_g_loss(real) == 0
  # Inverted discriminator: 0.5 x (2 scales x 1 + 2 scales x 1).
  assert L.lsgan_d_loss(fake, real) == 2.0
  # Outputs 0.5 everywhere: D pays 0.5 x (0.25 + 0.25) per scale.
  half = [jnp.full((1, 2, 2, 1), 0.5)] * 3
  np.testing.assert_allclose(L.lsgan_d_loss(half, half), 3 * 0.25)
  terms = L.discriminator_objective(half, fake)
  np.testing.assert_allclose([terms['real'], terms['fake'], terms['total']],
                             [0.75, 0.0, 0.375])


def test_feature_matching_formula_on_a_toy_example():
  # num_D 2, n_layers 1: per scale two features and the prediction (excluded).
  real = [[jnp.zeros((1, 2, 2, 1)), jnp.zeros((1, 1, 1, 3)), jnp.zeros((1, 1, 1, 1))]] * 2
  fake = [[jnp.full((1, 2, 2, 1), 1.0), jnp.array([[[[2.0, -2.0, 2.0]]]]),
           jnp.full((1, 1, 1, 1), 100.0)],
          [jnp.full((1, 2, 2, 1), -3.0), jnp.full((1, 1, 1, 3), 4.0),
           jnp.full((1, 1, 1, 1), 100.0)]]
  # (1 / num_D) x (4 / (n_layers + 1)) = 1: the sum of the mean absolute differences.
  assert L.feature_matching_loss(real, fake, 2, 1) == 1 + 2 + 3 + 4
  # With num_D 3, n_layers 3 the weight is 1/3 x 1.
  np.testing.assert_allclose(L.feature_matching_loss(real, fake, 3, 3), 10 / 3, rtol=1e-6)
  # Real features are targets: no gradient flows into them.
  grad = jax.grad(lambda r: L.feature_matching_loss(r, fake, 2, 1))(real)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grad))
  # The generator objective weights GAN 1, feature matching 10, VGG off without params.
  terms = L.generator_objective(fake, real, None, None)
  gan = (99.0 ** 2) * 2
  np.testing.assert_allclose([terms['gan'], terms['feat'], terms['vgg'], terms['total']],
                             [gan, 10.0, 0.0, gan + 10 * 10.0], rtol=1e-6)


def random_vgg_params():
  rng = np.random.default_rng(0)
  shapes = vgg_weights.param_shapes()
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * np.sqrt(
      2.0 / np.prod(s.shape[:-1])) if len(s.shape) == 4 else np.zeros(s.shape), jnp.float32),
                      shapes)


def test_vgg_loss_weights_relu_x_1_features():
  params = random_vgg_params()
  rng = np.random.default_rng(1)
  fake, real = (jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32) for _ in range(2))
  loss = jax.jit(L.vgg_loss_img2img)
  assert float(loss(real, real, params)) == 0
  phi_f = VGG19Features().apply({'params': params}, fake)
  phi_r = VGG19Features().apply({'params': params}, real)
  assert [phi_f[i].shape[-1] for i in L.VGG_LAYERS] == [64, 128, 256, 512]
  assert [phi_f[i].shape[1] for i in L.VGG_LAYERS] == [16, 8, 4, 2]
  expected = sum(w * np.mean(np.abs(np.asarray(phi_f[i]) - np.asarray(phi_r[i])))
                 for i, w in zip([0, 2, 4, 8], [1 / 32, 1 / 16, 1 / 8, 1 / 4]))
  assert expected > 0
  np.testing.assert_allclose(loss(fake, real, params), expected, rtol=1e-5)


def test_one_combined_step_updates_both_networks_with_separated_gradients():
  gen, disc, gen_params, disc_params = tiny()
  batch = random_batch(jax.random.key(4))
  g_opt, d_opt = L.optimizer(), L.optimizer()

  @jax.jit
  def step(gp, dp, g_state, d_state):
    (_, aux), (g_grad, d_grad) = jax.value_and_grad(L.gan_losses, argnums=(0, 1),
                                                    has_aux=True)(gp, dp, gen, disc, batch)
    g_upd, g_state = g_opt.update(g_grad, g_state, gp)
    d_upd, d_state = d_opt.update(d_grad, d_state, dp)
    return (optax.apply_updates(gp, g_upd), optax.apply_updates(dp, d_upd), g_state, d_state,
            aux['generator'], aux['discriminator'], g_grad, d_grad)

  @jax.jit
  def cross_gradients(gp, dp):
    """dL_G/dD and dL_D/dG, which must be zero."""
    g_loss = lambda g, d: L.generator_loss(g, d, gen, disc, batch)[0]
    d_loss = lambda g, d: L.discriminator_loss(g, d, gen, disc, batch)[0]
    return jax.grad(g_loss, argnums=1)(gp, dp), jax.grad(d_loss, argnums=0)(gp, dp)

  new_g, new_d, _, _, g_terms, d_terms, g_grad, d_grad = step(
      gen_params, disc_params, g_opt.init(gen_params), d_opt.init(disc_params))
  for terms in (g_terms, d_terms):
    assert all(np.isfinite(float(v)) for v in terms.values())
  assert float(g_terms['gan']) > 0 and float(g_terms['feat']) > 0 and g_terms['vgg'] == 0
  np.testing.assert_allclose(g_terms['total'], g_terms['gan'] + 10 * g_terms['feat'],
                             rtol=1e-6)
  np.testing.assert_allclose(d_terms['total'], 0.5 * (d_terms['real'] + d_terms['fake']),
                             rtol=1e-6)
  # Adam moves every parameter with a nonzero gradient by about lr; biases followed by
  # instance norm have exactly zero gradient, but the output layers do not.
  delta = lambda a, b: jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)
  g_delta, d_delta = delta(new_g, gen_params), delta(new_d, disc_params)
  assert g_delta['model_19']['kernel'] == pytest.approx(2e-4, rel=0.01)
  assert g_delta['model_19']['bias'] == pytest.approx(2e-4, rel=0.01)
  assert d_delta['scale1']['model3_0']['bias'] == pytest.approx(2e-4, rel=0.01)
  assert d_delta['scale0']['model0_0']['kernel'] == pytest.approx(2e-4, rel=0.01)
  # Gradients are separated: L_G does not reach D's params and L_D does not reach G's, so
  # the gradient of L_G + L_D taken above is (dL_G/dG, dL_D/dD).
  gd, dg = cross_gradients(gen_params, disc_params)
  assert jax.tree.structure(gd) == jax.tree.structure(d_grad)
  assert jax.tree.structure(dg) == jax.tree.structure(g_grad)
  assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves((gd, dg)))
