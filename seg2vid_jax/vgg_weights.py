"""Frozen VGG19 weights for the perceptual loss: our file format and the tool that writes it.

The perceptual term needs ImageNet-pretrained VGG19 convolutions, which cannot be downloaded at
run time here (nor in many clusters). A user who has a VGG19 weight file converts it once:

  python -m seg2vid_jax.vgg_weights --source=vgg19-dcbb9e9d.pth --output=vgg19_features.npz
  python -m seg2vid_jax.vgg_weights --source=vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 \
      --output=vgg19_features.npz

and names the output in the config (``config.vgg_weights``). Sources: a torchvision VGG19
state_dict (``.pth``, read through torch, needed only for this), a seg2vid checkpoint
(``vgg_net.vgg.features.*`` keys), or a Keras VGG19 weight file (``.h5``). Keras' VGG19 was
trained on BGR inputs in 0..255 minus the Caffe mean; that preprocessing is folded into the
first convolution so that the features follow torchvision's RGB, ImageNet-normalised
convention. The fold is exact except within one pixel of the border, where zero padding
differs between the two conventions.

The output is an ``.npz`` of the Flax parameters, keyed ``features_N/kernel`` and
``features_N/bias`` (HWIO kernels), for the convolutions up to relu4_4 that the loss uses.
"""

import os
from typing import Any, Dict

from absl import app
from absl import flags
import flax
import jax
import jax.numpy as jnp
import numpy as np

from seg2vid_jax import convert
from seg2vid_jax.models.vgg import BLOCKS, IMAGENET_MEAN, IMAGENET_STD, VGG19Features

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def param_shapes() -> Dict[str, Any]:
  """The shapes of the VGG19 parameters the perceptual loss uses (a Flax params tree)."""
  return jax.eval_shape(lambda: VGG19Features().init(jax.random.key(0),
                                                     jnp.zeros((1, 16, 16, 3))))['params']


def save(path: str, params) -> None:
  """Writes VGG19 parameters to our ``.npz`` format."""
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  with open(path, 'wb') as f:
    np.savez(f, **{k: np.asarray(v, np.float32) for k, v in flat.items()})


def load(path: str):
  """Reads VGG19 parameters from our ``.npz`` format, checking every name and shape."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'VGG weights file {path} does not exist (write it with '
                            '`python -m seg2vid_jax.vgg_weights`)')
  expected = flax.traverse_util.flatten_dict(param_shapes(), sep='/')
  with np.load(path) as data:
    missing = sorted(set(expected) - set(data.files))
    if missing:
      raise ValueError(f'VGG weights file {path} lacks {missing[:4]}: not written by '
                       'seg2vid_jax.vgg_weights?')
    flat = {}
    for key, shape in expected.items():
      if data[key].shape != shape.shape:
        raise ValueError(f'VGG weights file {path}: {key} has shape {data[key].shape}, '
                         f'expected {shape.shape}')
      flat[key] = jnp.asarray(data[key], jnp.float32)
  return flax.traverse_util.unflatten_dict(flat, sep='/')


def _keras_layers(path: str) -> Dict[str, Any]:
  """{layer name: (kernel, bias)} of the conv layers in a Keras ``.h5`` weight file."""
  import h5py  # pylint: disable=g-import-not-at-top
  layers = {}
  with h5py.File(path, 'r') as f:
    root = f['model_weights'] if 'model_weights' in f else f
    for name, group in root.items():
      arrays = []
      group.visititems(lambda _, obj: arrays.append(np.asarray(obj))
                       if isinstance(obj, h5py.Dataset) else None)
      kernels = [a for a in arrays if a.ndim == 4]
      biases = [a for a in arrays if a.ndim == 1]
      if kernels and biases:
        layers[name] = (kernels[0], biases[0])
  return layers


def from_keras_h5(path: str):
  """VGG19 parameters from a Keras VGG19 ``.h5`` file (layers ``blockB_convC``)."""
  layers = _keras_layers(path)
  params = {}
  for b, block in enumerate(BLOCKS):
    for c, (index, _) in enumerate(block):
      name = f'block{b + 1}_conv{c + 1}'
      if name not in layers:
        raise ValueError(f'{path} has no layer {name}: is it a Keras VGG19 weight file? '
                         f'(found {sorted(layers)[:6]})')
      kernel, bias = layers[name]
      params[f'features_{index}'] = {'kernel': kernel.astype(np.float32),
                                     'bias': bias.astype(np.float32)}
  params['features_0'] = fold_caffe_preprocessing(**params['features_0'])
  return jax.tree.map(jnp.asarray, params)


def fold_caffe_preprocessing(kernel, bias):
  """The first convolution of a Caffe-convention VGG re-expressed for our input convention.

  Keras sees k_j = 255·rgb_(2-j) - caffe_mean_j (BGR); we feed n_c = (rgb_c - mean_c) / std_c.
  Substituting rgb_c = n_c·std_c + mean_c gives the kernel and bias below.
  """
  std = np.asarray(IMAGENET_STD, np.float32)
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  rgb_kernel = kernel[:, :, ::-1, :]  # input channels BGR -> RGB
  caffe_rgb = np.asarray(CAFFE_MEAN_BGR, np.float32)[::-1]
  new_kernel = rgb_kernel * (255.0 * std)[None, None, :, None]
  offset = 255.0 * mean - caffe_rgb
  new_bias = bias + np.einsum('hwco,c->o', rgb_kernel, offset)
  return {'kernel': new_kernel.astype(np.float32), 'bias': new_bias.astype(np.float32)}


def convert_file(source: str):
  """VGG19 parameters from any supported source file (by its extension)."""
  if not os.path.exists(source):
    raise FileNotFoundError(f'VGG19 source file {source} does not exist')
  if source.endswith(('.h5', '.hdf5', '.keras')):
    return from_keras_h5(source)
  if source.endswith('.npz'):
    with np.load(source) as data:
      return convert.vgg_from_torch({k: data[k] for k in data.files})
  return convert.vgg_from_torch(source)


_SOURCE = flags.DEFINE_string('source', None, 'torchvision .pth, seg2vid .pth.tar, Keras .h5, '
                              'or .npz of a torchvision-style state_dict.')
_OUTPUT = flags.DEFINE_string('output', 'vgg19_features.npz', 'Where to write our .npz.')


def main(argv):
  del argv
  params = convert_file(_SOURCE.value)
  save(_OUTPUT.value, params)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  print(f'wrote {_OUTPUT.value}: {count:,} VGG19 parameters (conv1_1 ... conv4_4)')


if __name__ == '__main__':
  flags.mark_flag_as_required('source')
  app.run(main)
