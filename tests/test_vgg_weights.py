"""The VGG19 weight tool: our .npz format, Keras .h5 and torchvision-style sources."""

import subprocess
import sys

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seg2vid_jax import convert, vgg_weights
from seg2vid_jax.models.vgg import BLOCKS, VGG19Features

# Keras' VGG19 layers, all five blocks as in the real file (block5 is unused by the loss).
KERAS_LAYERS = [(f'block{b}_conv{c}', cin, cout) for b, c, cin, cout in (
    (1, 1, 3, 64), (1, 2, 64, 64), (2, 1, 64, 128), (2, 2, 128, 128),
    (3, 1, 128, 256), (3, 2, 256, 256), (3, 3, 256, 256), (3, 4, 256, 256),
    (4, 1, 256, 512), (4, 2, 512, 512), (4, 3, 512, 512), (4, 4, 512, 512),
    (5, 1, 512, 512), (5, 2, 512, 512), (5, 3, 512, 512), (5, 4, 512, 512))]


def write_keras_vgg19(path, seed=0):
  """A Keras VGG19 weight file in the real layout (layer groups, `weight_names`), random."""
  rng = np.random.default_rng(seed)
  weights = {}
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [b'input_1'] + [n.encode() for n, _, _ in KERAS_LAYERS]
    f.create_group('input_1').attrs['weight_names'] = []
    for name, cin, cout in KERAS_LAYERS:
      kernel = (rng.standard_normal((3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
      bias = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
      group = f.create_group(name)
      group.attrs['weight_names'] = [f'{name}/kernel:0'.encode(), f'{name}/bias:0'.encode()]
      group.create_dataset(f'{name}/kernel:0', data=kernel)
      group.create_dataset(f'{name}/bias:0', data=bias)
      weights[name] = (kernel, bias)
  return weights


def test_keras_h5_gives_caffe_equivalent_features(tmp_path):
  path = tmp_path / 'vgg19_notop.h5'
  weights = write_keras_vgg19(path)
  params = vgg_weights.convert_file(str(path))
  rgb = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (1, 12, 12, 3)), jnp.float32)
  ours = VGG19Features().apply({'params': params}, rgb)[0]  # relu1_1
  # Keras' own convention: BGR in 0..255 minus the Caffe mean, then conv1_1 and ReLU.
  kernel, bias = weights['block1_conv1']
  bgr = rgb[..., ::-1] * 255.0 - jnp.asarray(vgg_weights.CAFFE_MEAN_BGR)
  keras = jax.nn.relu(jax.lax.conv_general_dilated(
      bgr, kernel, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias)
  # Exact away from the one-pixel border, where the zero padding differs.
  np.testing.assert_allclose(np.asarray(ours[:, 1:-1, 1:-1]), np.asarray(keras[:, 1:-1, 1:-1]),
                             rtol=1e-4, atol=2e-3)
  np.testing.assert_array_equal(np.asarray(params['features_2']['kernel']),
                                weights['block1_conv2'][0])


def test_cli_writes_npz_that_loads(tmp_path):
  source = tmp_path / 'vgg19.h5'
  write_keras_vgg19(source)
  output = tmp_path / 'vgg19_features.npz'
  result = subprocess.run([sys.executable, '-m', 'seg2vid_jax.vgg_weights',
                           f'--source={source}', f'--output={output}'],
                          capture_output=True, text=True, check=True)
  assert '10,585,152 VGG19 parameters' in result.stdout
  params = vgg_weights.load(str(output))
  np.testing.assert_allclose(np.asarray(params['features_25']['bias']),
                             write_keras_vgg19(tmp_path / 'again.h5')['block4_conv4'][1])


def test_torchvision_style_state_dict(tmp_path):
  """A torchvision VGG19 state_dict (features.N.weight OIHW), here as an .npz of arrays."""
  rng = np.random.default_rng(2)
  state = {}
  cin = 3
  for block in BLOCKS:
    for index, cout in block:
      state[f'features.{index}.weight'] = rng.standard_normal((cout, cin, 3, 3)).astype('f4')
      state[f'features.{index}.bias'] = rng.standard_normal(cout).astype('f4')
      cin = cout
  path = tmp_path / 'torchvision_vgg19.npz'
  np.savez(path, **state)
  params = vgg_weights.convert_file(str(path))
  np.testing.assert_array_equal(np.asarray(params['features_5']['kernel'][1, 2, 7, 9]),
                                state['features.5.weight'][9, 7, 1, 2])
  assert jax.tree.structure(params) == jax.tree.structure(vgg_weights.param_shapes())


def test_bad_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere.npz'):
    vgg_weights.load(str(tmp_path / 'nowhere.npz'))
  bad = tmp_path / 'bad.npz'
  np.savez(bad, something=np.zeros(3))
  with pytest.raises(ValueError, match='bad.npz lacks'):
    vgg_weights.load(str(bad))
  wrong = tmp_path / 'wrong.h5'
  with h5py.File(wrong, 'w') as f:
    f.create_group('dense_1')
  with pytest.raises(ValueError, match='no layer block1_conv1'):
    vgg_weights.convert_file(str(wrong))


def test_converter_names_missing_and_unexpected_keys():
  with pytest.raises(KeyError, match='state_dict has no .encoder'):
    convert.from_torch({'zconv.main.0.weight': np.zeros((64, 320, 3, 3), 'f4')}, 'w_mask',
                       (128, 128))
  with pytest.raises(ValueError, match='variant must be one of'):
    convert.from_torch({}, 'three_path', (128, 128))
