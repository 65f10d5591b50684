"""Access to the published model's parity fixtures in ../shared/parity (never copied here).

The weights are regenerated from their keys by the recipe in the fixtures' README.
"""

import json
import os
import pathlib
import zlib

import numpy as np
import pytest

PARITY_DIR = pathlib.Path(os.environ.get(
    'SEG2VID_PARITY_DIR', pathlib.Path(__file__).resolve().parents[1].parent / 'shared' / 'parity'))


def require_parity_dir():
  """The fixtures folder; skips where it is absent, but fails under CI=true."""
  if not (PARITY_DIR / 'README.md').exists():
    message = f'parity fixtures not found at {PARITY_DIR} (set SEG2VID_PARITY_DIR)'
    if os.environ.get('CI') == 'true':
      pytest.fail(message + ': CI must have ../shared beside the clone')
    pytest.skip(message)
  return PARITY_DIR


def regenerate_tensor(key, shape):
  """One state_dict tensor, a function of its key alone (fixtures README)."""
  rng = np.random.default_rng(zlib.crc32(key.encode()))
  if key.endswith('num_batches_tracked'):
    return np.zeros(shape, np.int64)
  if key.endswith('running_mean'):
    value = rng.uniform(-0.1, 0.1, shape)
  elif key.endswith('running_var'):
    value = rng.uniform(0.5, 1.5, shape)
  elif len(shape) == 1 and key.endswith('.bias'):
    value = rng.uniform(-0.1, 0.1, shape)
  elif len(shape) == 1:
    value = rng.uniform(0.8, 1.2, shape)
  else:
    value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
  return np.asarray(value, np.float32)


# Fixture name -> the `convert.from_torch` variant that loads it.
FIXTURES = {'w_mask': 'w_mask', 'two_path': 'two_path', 'two_path_128_896': 'two_path',
            'image_only_rgb': 'image_only', 'image_only_gray': 'image_only'}


def state_dict(fixture, dtype=np.float32):
  """The regenerated state_dict of a fixture (float64: the float32 values, cast)."""
  manifest = json.loads((require_parity_dir() / f'state_dict_{fixture}.json').read_text())
  return {key: regenerate_tensor(key, shape).astype(
      dtype if not key.endswith('num_batches_tracked') else np.int64) for key, shape in manifest}


def reference(fixture, float64=False):
  """The reference inputs and outputs of a fixture (its float64 run if `float64`), converted to
  NHWC model conventions; `label_onehot` is None for the image-only model."""
  suffix = '_f64' if float64 else ''
  ref = np.load(require_parity_dir() / f'reference_{fixture}_128x128{suffix}.npz')
  b = ref['video'].shape[0]
  out = {k: ref[k] for k in ref.files if k.startswith('loss_')}
  out['video'] = ref['video'].transpose(0, 1, 3, 4, 2)
  out['label_onehot'] = (ref['label_onehot'].transpose(0, 2, 3, 1)
                         if 'label_onehot' in ref.files else None)
  out['noise'] = ref['noise_bg'].transpose(0, 2, 3, 1)
  out['z'] = ref['z'].reshape(b, -1, ref['z'].shape[-1])
  if 'warp_flow' in ref.files:  # The warp alone (fp32 fixtures).
    out['warp_image'] = ref['video'][:, 0].transpose(0, 2, 3, 1)
    out['warp_flow'] = ref['warp_flow'].transpose(0, 2, 3, 1)
    out['warp_out'] = ref['warp_out'].transpose(0, 2, 3, 1)
  for mode in ('eval', 'train'):
    out[mode] = dict(
        warped=ref[f'{mode}_warped'].transpose(0, 1, 3, 4, 2),
        refined=ref[f'{mode}_refined'].transpose(0, 1, 3, 4, 2),
        flow=ref[f'{mode}_flow'].transpose(0, 2, 3, 4, 1),
        flow_back=ref[f'{mode}_flowback'].transpose(0, 2, 3, 4, 1),
        mask_fw=ref[f'{mode}_mask_fw'], mask_bw=ref[f'{mode}_mask_bw'],
        mu=ref[f'{mode}_mu'].reshape(b, -1, ref[f'{mode}_mu'].shape[-1]),
        logvar=ref[f'{mode}_logvar'].reshape(b, -1, ref[f'{mode}_logvar'].shape[-1]))
  return out
