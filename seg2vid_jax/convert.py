"""Loads the authors' PyTorch checkpoints into seg2vid_jax.

The Flax modules carry the PyTorch module names (``main_0`` for ``main.0``), so every Flax
leaf has exactly one state_dict key; this module only renames and re-lays out the tensors:
Conv2d OIHW -> HWIO, Conv3d OIDHW -> DHWIO, Linear (out, in) -> (in, out), and the two
stride-1 ConvTranspose2d layers of the refinement decoder (IOHW), which the Flax model computes
as ordinary convolutions, get their kernels flipped. Every key must be used and every shape
must match, or the conversion stops and names the key.
"""

import os
import re
from typing import Any, Mapping, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np

from seg2vid_jax.models import Img2Vid, VGG19Features, example_inputs

VARIANTS = ('w_mask', 'two_path', 'image_only')
_IGNORED_SUFFIX = 'num_batches_tracked'
_VGG_PREFIX = 'vgg_net.vgg.'
# Modules of the refinement decoder that are ConvTranspose2d in the original (upc1.0, upcN.1).
_TRANSPOSED = re.compile(r'refine_net\.image_decoder\.upc\d+\.\d+$')
_LEAF_NAMES = {('params', 'kernel'): 'weight', ('params', 'bias'): 'bias',
               ('params', 'scale'): 'weight', ('batch_stats', 'mean'): 'running_mean',
               ('batch_stats', 'var'): 'running_var'}


def load_state_dict(source) -> Mapping[str, np.ndarray]:
  """A state_dict as {key: numpy array} from a mapping or a ``.pth``/``.pth.tar`` path.

  A path is read with torch (needed only for this); a checkpoint dict holding the model under
  ``'vae'`` or ``'state_dict'`` is unwrapped, and a DataParallel ``module.`` prefix dropped.
  """
  if isinstance(source, (str, os.PathLike)):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ImportError(f'reading {source} needs PyTorch (pip install torch); or pass the '
                        'state_dict as a mapping of numpy arrays') from e
    source = torch.load(source, map_location='cpu', weights_only=False)
  for key in ('vae', 'state_dict'):
    if isinstance(source, Mapping) and key in source and isinstance(source[key], Mapping):
      source = source[key]
  out = {}
  for key, value in source.items():
    if hasattr(value, 'detach'):
      value = value.detach().cpu().numpy()
    out[key[len('module.'):] if key.startswith('module.') else key] = np.asarray(value)
  return out


def torch_key(path: Tuple[str, ...]) -> str:
  """The state_dict key of a Flax variable path, e.g. ('params', 'encoder', 'econv2',
  'main_0', 'kernel') -> 'encoder.econv2.main.0.weight'."""
  module = '.'.join(re.sub(r'_(\d+)$', r'.\1', name) for name in path[1:-1])
  return f'{module}.{_LEAF_NAMES[(path[0], path[-1])]}'


def to_flax_layout(key: str, value: np.ndarray) -> np.ndarray:
  """A PyTorch tensor in the layout of the Flax variable that `key` names."""
  if not key.endswith('.weight') or value.ndim == 1:
    return value
  if value.ndim == 2:  # Linear (out, in).
    return value.T
  if _TRANSPOSED.search(key[:-len('.weight')]):  # ConvTranspose2d IOHW, as a flipped conv.
    return np.transpose(value, (2, 3, 0, 1))[::-1, ::-1]
  return np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))  # O I *S -> *S I O.


def fill_variables(template, state_dict: Mapping[str, np.ndarray], prefix: str = ''):
  """Fills a Flax variable tree (of arrays or ShapeDtypeStructs) from a state_dict.

  Returns the filled tree and the set of keys it used.
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(template))
  filled, used = {}, set()
  for path, leaf in flat.items():
    key = prefix + torch_key(path)
    if key not in state_dict:
      raise KeyError(f'state_dict has no {key!r} (needed for {"/".join(path)}); is it a '
                     'checkpoint of this variant?')
    value = np.asarray(state_dict[key])
    # float64 weights stay float64 under jax_enable_x64 (parity in float64); else fp32.
    x64 = value.dtype == np.float64 and jax.config.jax_enable_x64
    value = to_flax_layout(key, value.astype(np.float64 if x64 else np.float32))
    if value.shape != tuple(leaf.shape):
      raise ValueError(f'state_dict {key!r} has shape {state_dict[key].shape}, which gives '
                       f'{value.shape}; the model needs {tuple(leaf.shape)}')
    filled[path] = jnp.asarray(np.ascontiguousarray(value))
    used.add(key)
  return flax.traverse_util.unflatten_dict(filled), used


def from_torch(state_dict, variant: str, image_size: Tuple[int, int]) -> Tuple[Img2Vid, Any]:
  """A published seg2vid checkpoint as ``(model, variables)``.

  The architecture's free sizes are read from the state_dict's shapes: K from zconv, the
  two-path latent split from the motion encoders' fc1 (512/512 as the authors' training script
  builds it, 128/896 in their released two-path checkpoint), and the image-only model's
  channels (1 for KTH, 3 for UCF-101) from its first encoder convolution.

  Args:
    state_dict: mapping key -> array (numpy or torch), or a path to a ``.pth.tar`` (needs torch).
    variant: 'w_mask' (one 20-channel motion encoder), 'two_path' (background/foreground), or
      'image_only' (no label map: the "genmask" model of KTH and UCF-101).
    image_size: (H, W) of the frames; the weights do not depend on it beyond the latent rows.
  """
  if variant not in VARIANTS:
    raise ValueError(f'variant must be one of {VARIANTS}, not {variant!r}')
  sd = load_state_dict(state_dict)
  shape = lambda key: _required(sd, key, variant).shape
  fields = dict(num_predicted_frames=shape('zconv.main.0.weight')[0] // 16)
  if variant == 'two_path':
    fields.update(two_path=True, latent_split=(shape('motion_net_bg.fc1.bias')[0],
                                               shape('motion_net_fg.fc1.bias')[0]))
  elif variant == 'image_only':
    fields.update(num_classes=0, channels=shape('encoder.econv1.main.0.weight')[1],
                  upconv_upsampling='nearest')
  model = Img2Vid(image_size=tuple(image_size), **fields)
  template = jax.eval_shape(lambda: model.init(jax.random.key(0), *example_inputs(model)))
  variables, used = fill_variables(template, sd)
  unused = [k for k in sd if k not in used and not k.endswith(_IGNORED_SUFFIX)
            and not k.startswith(_VGG_PREFIX)]
  if unused:
    raise ValueError(f'{len(unused)} state_dict keys have no place in the {variant} model, '
                     f'e.g. {unused[:5]}: wrong variant?')
  return model, variables


def _required(sd, key, variant):
  """sd[key], or an error that says which variant's key is missing."""
  if key not in sd:
    raise KeyError(f'state_dict has no {key!r}, which every {variant} checkpoint has: wrong '
                   f'variant? (one of {VARIANTS})')
  return sd[key]


def vgg_from_torch(state_dict) -> Any:
  """The perceptual loss's VGG19 parameters from ``vgg_net.vgg.features.*`` keys (a seg2vid
  checkpoint) or plain ``features.*`` keys (a torchvision VGG19 state_dict)."""
  sd = load_state_dict(state_dict)
  prefix = _VGG_PREFIX if any(k.startswith(_VGG_PREFIX) for k in sd) else ''
  template = jax.eval_shape(lambda: VGG19Features().init(jax.random.key(0),
                                                         jnp.zeros((1, 16, 16, 3))))
  variables, _ = fill_variables(template, sd, prefix)
  return variables['params']
