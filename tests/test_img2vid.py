"""The Img2Vid model: published sizes, and the behaviour of its forward pass."""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seg2vid_jax.models import Img2Vid, VGG19Features, example_inputs, init_variables
from seg2vid_jax.models.img2vid import RefineNet
from seg2vid_jax.ops import warp

# MODEL.md, "Parameter counts of the published model" (trainable, VGG excluded).
PUBLISHED = dict(encoder=700_832, flow_decoder=2_113_280, zconv=184_384, fc=1_049_600,
                 flownext=64_946, flowprev=64_946, get_mask=64_946, refine_net=51_719_299)
PUBLISHED_W_MASK = dict(PUBLISHED, motion_net=2_597_120)
PUBLISHED_TWO_PATH = dict(PUBLISHED, motion_net_bg=1_542_912, motion_net_fg=1_541_888)
# A small configuration for CPU tests: 64x64, four refinement levels, narrow layers.
SMALL = dict(image_size=(64, 64), encoder_widths=(16, 32, 64, 128),
             motion_widths=(16, 32, 32, 64, 64), latent_channels=16, z_dim=256,
             code_channels=8, head_width=8, refine_widths=(16, 32, 64, 64),
             refine_depths=(1, 1, 1, 1), refine_bottleneck=64)


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def param_shapes(model):
  return jax.eval_shape(lambda: model.init(jax.random.key(0),
                                           *example_inputs(model)))['params']


# ../shared/parity/summary_more.json: the released two-path checkpoint's 128/896 latent split
# and the image-only ("genmask") model of KTH (grayscale) and UCF-101 (RGB).
PUBLISHED_128_896 = dict(PUBLISHED, motion_net_bg=755_712, motion_net_fg=2_329_088)
PUBLISHED_IMAGE_ONLY_RGB = dict(PUBLISHED, motion_net=2_586_880, encoder=690_592)
PUBLISHED_IMAGE_ONLY_GRAY = dict(PUBLISHED, motion_net=2_581_760, encoder=689_568,
                                 refine_net=51_716_993)


@pytest.mark.parametrize('fields,table,total', [
    ({}, PUBLISHED_W_MASK, 58_559_353),
    ({'two_path': True}, PUBLISHED_TWO_PATH, 59_047_033),
    ({'two_path': True, 'latent_split': (128, 896)}, PUBLISHED_128_896, 59_047_033),
    ({'num_classes': 0}, PUBLISHED_IMAGE_ONLY_RGB, 58_538_873),
    ({'num_classes': 0, 'channels': 1}, PUBLISHED_IMAGE_ONLY_GRAY, 58_530_423)])
def test_published_parameter_counts_module_by_module(fields, table, total):
  params = param_shapes(Img2Vid(image_size=(128, 256), **fields))
  assert {name: count(p) for name, p in params.items()} == table
  assert count(params) == total


def test_bad_latent_split_and_label_inputs_are_named():
  with pytest.raises(ValueError, match=r'latent_split \(100, 100\) must be two positive'):
    param_shapes(Img2Vid(image_size=(64, 64), two_path=True, latent_split=(100, 100)))
  model = Img2Vid(image_size=(64, 64), num_classes=0)
  video, _, noise, z = example_inputs(model)
  with pytest.raises(ValueError, match='image-only model .* takes label_onehot=None'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), video, jnp.zeros((1, 64, 64, 20)),
                                      noise, z))


def test_vgg_features_used_by_the_loss():
  """conv1_1 ... conv4_4: MODEL.md's 20,024,384 counts all of torchvision's `features`,
  whose conv5 block (4 x 2,359,808 parameters) the loss never reaches."""
  params = jax.eval_shape(lambda: VGG19Features().init(jax.random.key(0),
                                                       jnp.zeros((1, 32, 32, 3))))
  assert count(params) == 20_024_384 - 4 * 2_359_808


@functools.lru_cache(maxsize=None)
def small_model(two_path=False, **overrides):
  model = Img2Vid(**dict(SMALL, two_path=two_path, **overrides))
  variables = init_variables(model, jax.random.key(0), 2)
  return model, variables


def apply(model, *args, **kwargs):
  """model.apply under jit (the tests would spend their time dispatching ops otherwise)."""
  return jax.jit(model.apply, static_argnames=('train', 'mutable'))(*args, **kwargs)


def small_inputs(seed=0):
  rng = np.random.default_rng(seed)
  video = jnp.asarray(rng.uniform(0, 1, (2, 5, 64, 64, 3)), jnp.float32)
  labels = jax.nn.one_hot(rng.integers(0, 20, (2, 64, 64)), 20)
  noise = jnp.asarray(rng.standard_normal((2, 64, 64, 3)), jnp.float32)
  return video, labels, noise


@pytest.mark.parametrize('two_path', [False, True])
def test_outputs_are_consistent_with_the_published_definition(two_path):
  model, variables = small_model(two_path)
  video, labels, noise = small_inputs()
  out = apply(model, variables, video, labels, noise, rngs={'latent': jax.random.key(1)})
  assert out['mu'].shape == out['logvar'].shape == out['z'].shape == (2, 1, 256)
  # warped_k = warp(I0, f_k · m_fw,k), recomputed independently of the model.
  i0 = jnp.broadcast_to(video[:, :1], out['warped'].shape)
  np.testing.assert_allclose(np.asarray(out['warped']),
                             np.asarray(warp(i0, out['flow'] * out['mask_fw'][..., None])),
                             atol=1e-6)
  for name in ('refined', 'mask_fw', 'mask_bw'):
    assert 0 <= float(out[name].min()) and float(out[name].max()) <= 1, name
  assert out['flow'].shape == (2, 4, 64, 64, 2)


def test_flow_in_pixels_scales_the_heads_output_to_normalised_units():
  """With the same parameters, flow_in_pixels divides both flows by W/2 px per unit (x) and
  H/2 (y): a non-square frame tells the axes apart."""
  fields = dict(image_size=(64, 128), z_dim=512)
  model, variables = small_model(**fields)
  pixels = small_model(flow_in_pixels=True, **fields)[0]
  rng = np.random.default_rng(1)
  video = jnp.asarray(rng.uniform(0, 1, (2, 5, 64, 128, 3)), jnp.float32)
  labels = jax.nn.one_hot(rng.integers(0, 20, (2, 64, 128)), 20)
  noise = jnp.zeros((2, 64, 128, 3))
  z = jnp.zeros((2, 1, 512))
  ref = apply(model, variables, video, labels, noise, z)
  out = apply(pixels, variables, video, labels, noise, z)
  unit = np.asarray([2 / 127, 2 / 63], np.float32)
  for name in ('flow', 'flow_back'):
    np.testing.assert_allclose(np.asarray(out[name]), np.asarray(ref[name]) * unit, rtol=1e-6)
  assert float(jnp.abs(ref['flow']).max()) > 0.1  # Not all zero: the scaling is seen.


def test_refine_residual_starts_as_the_warp_and_then_corrects_it():
  """refine_residual: one scalar parameter more; at its zero initial gain the prediction is the
  warped frame (clipped to [1e-3, 1 - 1e-3]), and a gain of 1 moves it by the U-Net's output."""
  model, variables = small_model(refine_residual=True)
  published = small_model()[1]['params']['refine_net']['image_decoder']
  decoder = dict(variables['params']['refine_net']['image_decoder'])
  assert float(decoder.pop('residual_gain')) == 0.0
  assert jax.tree.map(jnp.shape, decoder) == jax.tree.map(jnp.shape, dict(published))
  video, labels, noise = small_inputs()
  z = jnp.zeros((2, 1, 256))
  out = apply(model, variables, video, labels, noise, z)
  np.testing.assert_allclose(np.asarray(out['refined']),
                             np.clip(np.asarray(out['warped']), 1e-3, 1 - 1e-3), atol=1e-6)
  params = flax.core.unfreeze(variables['params'])
  params['refine_net']['image_decoder']['residual_gain'] = jnp.ones(())
  moved = apply(model, dict(variables, params=params), video, labels, noise, z)['refined']
  assert float(jnp.abs(moved - out['refined']).mean()) > 0.01


def test_latent_sampling_posterior_and_prior():
  model, variables = small_model()
  video, labels, noise = small_inputs()
  rngs = {'latent': jax.random.key(3)}
  # Generation: one frame, no motion encoder, z = eps ~ N(0, I) from the 'latent' rng.
  gen = apply(model, variables, video[:, :1], labels, noise, rngs=rngs)
  assert gen['mu'] is None
  eps = np.asarray(gen['z'])
  assert abs(eps.mean()) < 0.15 and abs(eps.std() - 1) < 0.1
  again = apply(model, variables, video[:, :1], labels, noise, rngs=rngs)
  np.testing.assert_array_equal(np.asarray(gen['refined']), np.asarray(again['refined']))
  # Training: the posterior z = mu + exp(logvar / 2)·eps with the same eps draw.
  train_out, _ = apply(model, variables, video, labels, noise, train=True, rngs=rngs,
                       mutable=('batch_stats',))
  posterior = train_out['mu'] + jnp.exp(0.5 * train_out['logvar']) * eps
  np.testing.assert_allclose(np.asarray(train_out['z']), np.asarray(posterior), atol=1e-5)


def test_remat_refine_recomputes_levels_and_keeps_the_gradients():
  """Level-wise nn.remat of the refinement U-Net: the backward pass recomputes each level's
  convolutions (one more per layer in the lowered program), and the gradients are the same.

  Whether the compiler then saves memory is the backend's business: XLA:CPU merges the
  recomputation back (`benchmarks/train_step.py --remat` measures it).
  """
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (4, 32, 32, 3)), jnp.float32)
  plain = RefineNet((8, 16, 16), (2, 1, 1), 16, bn_groups=2)
  remat = RefineNet((8, 16, 16), (2, 1, 1), 16, bn_groups=2, remat=True)
  with jax.threefry_partitionable(False):  # Compiles much faster; see init_variables.
    variables = jax.jit(plain.init, static_argnums=2)(jax.random.key(0), x, True)

  def loss(module, params):
    y, _ = module.apply({**variables, 'params': params}, x, True, mutable=['batch_stats'])
    return jnp.mean(jnp.square(y - x))
  grads, convolutions = [], []
  for module in (plain, remat):
    lowered = jax.jit(jax.grad(functools.partial(loss, module))).lower(variables['params'])
    convolutions.append(lowered.as_text().count('stablehlo.convolution'))
    grads.append(lowered.compile()(variables['params']))
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  assert float(jnp.abs(jax.tree.leaves(grads[0])[0]).max()) > 0
  # Rematerialised: the 3 encoder levels' 4 layers and the 2 decoder levels' 2 layers.
  assert convolutions[1] - convolutions[0] == 6, convolutions


def test_train_mode_updates_batch_statistics_eval_does_not():
  model, variables = small_model()
  video, labels, noise = small_inputs()
  z = jnp.zeros((2, 1, 256))
  _, state = apply(model, variables, video, labels, noise, z, train=True,
                   mutable=('batch_stats',))
  before = flax.traverse_util.flatten_dict(variables['batch_stats'])
  after = flax.traverse_util.flatten_dict(state['batch_stats'])
  assert before.keys() == after.keys()
  # Every running variance moves (running means may stay 0 behind a normalised layer).
  unchanged = [k for k in before if k[-1] == 'var' and np.allclose(before[k], after[k])]
  assert not unchanged
  _, state = apply(model, variables, video, labels, noise, z, mutable=('batch_stats',))
  assert jax.tree.all(jax.tree.map(np.array_equal, state['batch_stats'],
                                   variables['batch_stats']))


def test_bad_inputs_are_clear_errors():
  model, variables = small_model()
  video, labels, noise = small_inputs()
  with pytest.raises(ValueError, match='configured for 64x64'):
    apply(model, variables, video[:, :, :32], labels, noise, jnp.zeros((2, 1, 256)))
  with pytest.raises(ValueError, match='has 3 frames'):
    apply(model, variables, video[:, :3], labels, noise, jnp.zeros((2, 1, 256)))
  with pytest.raises(ValueError, match='multiple of 16'):
    _ = Img2Vid(image_size=(100, 128)).latent_shape


@pytest.mark.parametrize('name,total', [
    ('cityscapes', 59_047_033), ('cityscapes_released', 59_047_033),
    ('cityscapes_w_mask', 58_559_353), ('kth', 58_530_423), ('ucf101', 58_538_873)])
def test_published_configs_build_the_published_models(name, total):
  """Each published config file builds the model of its released checkpoint (the converter
  reads the same architecture from that state_dict: tests/test_parity.py)."""
  import importlib  # pylint: disable=g-import-not-at-top
  from seg2vid_jax.tasks import img2vid  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config()
  model = img2vid.create_model(config)
  assert count(param_shapes(model)) == total
  assert (model.num_classes == 0) == (name in ('kth', 'ucf101'))
  if name == 'cityscapes_released':
    assert model.latent_split == (128, 896)
