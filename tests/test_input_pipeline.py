"""Tests of the input pipeline: values, determinism, resuming, evaluation padding, sharding."""

import logging
import os
import subprocess
import sys
import textwrap

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

tf.config.set_visible_devices([], 'GPU')

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

from seg2vid_jax import input_pipeline
from seg2vid_jax.data import synthetic
from seg2vid_jax.data import synthetic_tfds
from seg2vid_jax.ops import warp
from tests import conftest

tfds.disable_progress_bar()
NUM_DEVICES = jax.device_count()
ONE_DEVICE = input_pipeline.data_sharding(jax.devices()[:1])


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      dataset='synthetic', data_dir=None, image_size=(16, 32), num_frames=3,
      batch_size=2 * NUM_DEVICES, two_path=False, flip=True, shuffle_buffer=16,
      skip_bad_examples=False, train_split='train', eval_split='validation', num_eval_clips=5))
  config.update(overrides)
  return config


def _take(iterator, n):
  return [jax.tree.map(np.asarray, next(iterator)) for _ in range(n)]


def _signature(video):
  """A flip-invariant fingerprint of a clip (the sum of its pixels)."""
  return round(float(np.asarray(video, np.float64).sum()), 2)


@pytest.fixture(scope='module')
def tiny_tfds(tmp_path_factory):
  """A prepared seg2vid_synthetic dataset: 16x32, 4 frames, 6 train / 5 validation clips."""
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  config = synthetic_tfds.SyntheticConfig(
      name='tiny', height=16, width=32, num_frames=4, seed=3,
      num_clips={'train': 6, 'validation': 5, 'test': 1})
  synthetic_tfds.SyntheticVideo(config=config, data_dir=data_dir).download_and_prepare()
  return data_dir


def _tfds_config(data_dir, **overrides):
  return _config(dataset='seg2vid_synthetic/tiny', data_dir=data_dir, **overrides)


def _stored_signatures(data_dir, split, num_frames=3):
  builder = tfds.builder('seg2vid_synthetic/tiny', data_dir=data_dir)
  return sorted(_signature(e['video'][:num_frames].astype(np.float32) / 255.0)
                for e in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


# ----------------------------------------------------------------------------------------------
# Values.


def test_synthetic_stream_values(tmp_path):
  config = _config(two_path=True)
  batch = _take(input_pipeline.create_train_iterator(config, seed=5), 1)[0]
  b, t, (h, w) = config.batch_size, config.num_frames, config.image_size
  assert batch['video'].shape == (b, t, h, w, 3) and batch['video'].dtype == np.float32
  assert batch['labels'].shape == (b, h, w) and batch['labels'].dtype == np.int32
  assert batch['label_onehot'].shape == (b, h, w, 20)
  assert batch['flow'].shape == (b, t - 1, h, w, 2) and batch['valid'].dtype == bool
  np.testing.assert_array_equal(batch['label_onehot'].argmax(-1), batch['labels'])
  np.testing.assert_array_equal(batch['label_onehot'].sum(-1), 1.0)
  np.testing.assert_array_equal(np.concatenate([batch['label_bg'], batch['label_fg']], -1),
                                batch['label_onehot'])
  # Clip 1 of step 0 is make_clip((seed, 0, 1)), flipped or not.
  clip = synthetic.make_clip((5, 0, 1), h, w, t)
  video = clip['video'].astype(np.float32) / 255.0
  flipped = not np.allclose(batch['video'][1], video)
  if flipped:
    video, labels = video[:, :, ::-1], clip['labels'][0][:, ::-1]
    flow = clip['flow'][:, :, ::-1] * np.array([-1.0, 1.0], np.float32)
  else:
    labels, flow = clip['labels'][0], clip['flow']
  np.testing.assert_allclose(batch['video'][1], video, atol=1e-6)
  np.testing.assert_array_equal(batch['labels'][1], labels)
  np.testing.assert_allclose(batch['flow'][1], flow, atol=1e-6)


def _warp_error(video, flow, valid):
  """Mean |warp(frame 0, flow) - frame t| over valid pixels, in [0, 1] units."""
  warped = np.asarray(warp(jnp.broadcast_to(video[0], video[1:].shape), jnp.asarray(flow)))
  return np.abs(warped - video[1:]).mean(-1)[valid].mean()


def test_flip_keeps_flow_consistent():
  """On flipped clips, warping frame 0 with the (negated-x) flow is as exact as unflipped."""
  config = _config(image_size=(32, 64), batch_size=8 * NUM_DEVICES)
  batch = _take(input_pipeline.create_train_iterator(config, seed=0), 1)[0]
  flipped = 0
  for i in range(config.batch_size):
    clip = synthetic.make_clip((0, 0, i), 32, 64, 3)
    video = clip['video'] / np.float32(255.0)
    if np.allclose(batch['video'][i], video, atol=1e-6):
      continue
    flipped += 1
    np.testing.assert_allclose(batch['video'][i], video[:, :, ::-1], atol=1e-6)
    error = _warp_error(batch['video'][i], batch['flow'][i], batch['valid'][i])
    unflipped = _warp_error(video, clip['flow'], clip['valid'])
    assert error < 0.04 and abs(error - unflipped) < 2e-3, (i, error, unflipped)
  assert 0 < flipped < config.batch_size


def test_tfds_resize_and_labels_nearest(tiny_tfds):
  config = _tfds_config(tiny_tfds, image_size=(8, 16), flip=False)
  batch = _take(input_pipeline.create_train_iterator(config, seed=0), 1)[0]
  assert batch['video'].shape == (config.batch_size, 3, 8, 16, 3)
  assert batch['flow'].shape == (config.batch_size, 2, 8, 16, 2)
  assert 0.0 <= batch['video'].min() and batch['video'].max() <= 1.0
  builder = tfds.builder('seg2vid_synthetic/tiny', data_dir=tiny_tfds)
  stored = {e['clip_id'] for e in tfds.as_numpy(builder.as_dataset(split='train'))}
  assert len(stored) == 6
  # Nearest resizing keeps ids: every id in the batch is a Cityscapes id the generator draws.
  assert set(np.unique(batch['labels'])) <= {0, 1, 2, 5, 7, 8, 9, 10, 11, 13}


def test_kth_short_name_prepares_grayscale_without_labels(tmp_path):
  """dataset='kth' builds seg2vid_kth for image_size/num_frames/actions on first use."""
  root = tmp_path / 'kth'
  for person, num in (('person01', 6), ('person17', 3)):
    for n in range(1, num + 1):
      path = root / 'walking' / f'{person}_walking_d1' / f'image-{n:03d}_128x128.png'
      os.makedirs(path.parent, exist_ok=True)
      Image.fromarray(np.full((16, 16), 25 * n, np.uint8)).save(path)
  config = _config(dataset='kth', actions=('walking',), data_dir=str(tmp_path / 'data'),
                   manual_dir=str(root), image_size=(8, 8), flip=False, eval_split='test',
                   batch_size=NUM_DEVICES)
  batch = _take(input_pipeline.create_eval_iterator(config), 1)[0]
  assert sorted(batch) == ['labels', 'mask', 'video']  # No label map: the image-only model.
  assert os.path.isdir(tmp_path / 'data' / 'seg2vid_kth' / 'walking_8x8_t3')
  video = batch['video'][0]
  assert video.shape == (3, 8, 8, 1)  # Grayscale stays one channel.
  np.testing.assert_allclose(video[:, 0, 0, 0], np.array([25, 50, 75]) / 255.0, atol=1e-6)
  np.testing.assert_array_equal(batch['labels'], 0)
  config.channels = 3
  rgb = _take(input_pipeline.create_eval_iterator(config), 1)[0]['video'][0]
  np.testing.assert_allclose(rgb, np.repeat(video, 3, axis=-1), atol=1e-6)


def test_unknown_dataset_name():
  with pytest.raises(ValueError, match="dataset='mnist': expected 'synthetic', one of"):
    input_pipeline.create_train_iterator(_config(dataset='mnist'), seed=0)


# ----------------------------------------------------------------------------------------------
# Determinism and resuming.


def test_synthetic_same_seed_same_batches_and_resume():
  config = _config()
  first = _take(input_pipeline.create_train_iterator(config, seed=1), 3)
  again = _take(input_pipeline.create_train_iterator(config, seed=1), 3)
  other = _take(input_pipeline.create_train_iterator(config, seed=2), 1)
  resumed = _take(input_pipeline.create_train_iterator(config, seed=1, start_step=2), 1)
  for a, b in zip(first, again):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(first[0]['video'], other[0]['video'])
  for key in first[2]:
    np.testing.assert_array_equal(first[2][key], resumed[0][key])


def test_tfds_epochs_are_permutations_and_resume_is_exact(tiny_tfds):
  config = _tfds_config(tiny_tfds, batch_size=2)
  one = ONE_DEVICE  # A batch of 2 whatever the number of devices.
  steps_per_epoch = 3  # 6 train clips, batch 2.
  batches = _take(input_pipeline.create_train_iterator(config, seed=4, sharding=one),
                  3 * steps_per_epoch)
  stored = _stored_signatures(tiny_tfds, 'train')
  orders = []
  for epoch in range(3):
    sigs = [_signature(v) for b in batches[3 * epoch:3 * epoch + 3] for v in b['video']]
    assert sorted(sigs) == stored  # Each clip once per epoch.
    orders.append(sigs)
  assert orders[0] != orders[1] or orders[1] != orders[2]  # Reshuffled per epoch.
  again = _take(input_pipeline.create_train_iterator(config, seed=4, sharding=one), 2)
  resumed = _take(
      input_pipeline.create_train_iterator(config, seed=4, sharding=one, start_step=4), 3)
  for a, b in zip(batches[:2], again):
    np.testing.assert_array_equal(a['video'], b['video'])
  for a, b in zip(batches[4:7], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


# ----------------------------------------------------------------------------------------------
# Evaluation.


def test_tfds_eval_visits_each_clip_once_with_padding(tiny_tfds):
  config = _tfds_config(tiny_tfds, batch_size=2)
  batches = _take(input_pipeline.create_eval_iterator(config, sharding=ONE_DEVICE), 3)
  assert [b['mask'].tolist() for b in batches] == [[True, True], [True, True], [True, False]]
  sigs = sorted(_signature(v) for b in batches for v, m in zip(b['video'], b['mask']) if m)
  assert sigs == _stored_signatures(tiny_tfds, 'validation')
  np.testing.assert_array_equal(batches[-1]['video'][1], 0.0)  # Padding.
  with pytest.raises(StopIteration):
    _take(input_pipeline.create_eval_iterator(config, sharding=ONE_DEVICE), 4)
  config.num_eval_clips = 3  # The first 3 clips only.
  limited = _take(input_pipeline.create_eval_iterator(config, sharding=ONE_DEVICE), 2)
  assert [b['mask'].tolist() for b in limited] == [[True, True], [True, False]]
  np.testing.assert_array_equal(limited[0]['video'], batches[0]['video'])


def test_synthetic_eval_is_fixed_and_padded():
  config = _config(batch_size=NUM_DEVICES * 2, num_eval_clips=2 * NUM_DEVICES + 1)
  a = _take(input_pipeline.create_eval_iterator(config), 2)
  b = _take(input_pipeline.create_eval_iterator(config), 2)
  assert sum(int(x['mask'].sum()) for x in a) == config.num_eval_clips
  np.testing.assert_array_equal(a[1]['video'], b[1]['video'])
  clip = synthetic.make_clip((0, 1, 0), 16, 32, 3)  # Eval clip 0: no flip.
  np.testing.assert_allclose(a[0]['video'][0], clip['video'] / 255.0, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Bad input.


def test_clips_shorter_than_num_frames(tiny_tfds):
  with pytest.raises(ValueError, match='clips are 4 frames long, shorter than num_frames=5'):
    input_pipeline.create_train_iterator(_tfds_config(tiny_tfds, num_frames=5), seed=0)


def test_empty_or_unknown_split(tiny_tfds):
  with pytest.raises(ValueError, match=r"split 'validation\[5:\]' is empty"):
    next(input_pipeline.create_eval_iterator(_tfds_config(tiny_tfds), split='validation[5:]'))
  with pytest.raises(ValueError, match=r"no split 'nosuch'"):
    next(input_pipeline.create_eval_iterator(_tfds_config(tiny_tfds), split='nosuch'))


def test_label_check_stops_or_skips(caplog):
  labels = np.zeros((3, 4, 4), np.uint8)
  labels[1, 2, 2] = 25
  ds = tf.data.Dataset.from_tensor_slices({'label': labels, 'clip_id': ['a', 'b', 'c']})
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'(?s)mydata: label id outside '
                     r'0..19 in clip.*b.*max id.*25'):
    list(input_pipeline.check_labels(ds, 'mydata', skip=False))
  with caplog.at_level(logging.WARNING):
    kept = [e['clip_id'].decode() for e in
            input_pipeline.check_labels(ds, 'mydata', skip=True).as_numpy_iterator()]
  assert kept == ['a', 'c']
  assert 'mydata: skipped clip b: label id 25 is outside 0..19 (1 skipped so far)' in caplog.text


# ----------------------------------------------------------------------------------------------
# Sharding over several devices (a subprocess with 8 fake CPU devices).

_SHARDED_SCRIPT = textwrap.dedent('''
    import numpy as np, jax, ml_collections
    from seg2vid_jax import input_pipeline
    assert jax.device_count() == 8, jax.devices()
    config = ml_collections.ConfigDict(dict(
        dataset='synthetic', image_size=(16, 16), num_frames=2, batch_size=8, flip=False))
    batch = next(input_pipeline.create_train_iterator(config, seed=0))
    video = batch['video']
    assert video.shape == (8, 2, 16, 16, 3), video.shape
    assert video.sharding.spec == jax.sharding.PartitionSpec('data'), video.sharding
    shards = sorted(video.addressable_shards, key=lambda s: s.index[0].start)
    assert [s.data.shape[0] for s in shards] == [1] * 8
    assert len({s.device for s in shards}) == 8
    local = next(input_pipeline.make_train_dataset(config, 0).as_numpy_iterator())
    np.testing.assert_allclose(np.asarray(video), local['video'] / np.float32(255.0), atol=1e-6)
    assert local['video'].dtype == np.uint8  # Host batches are compact; finalize scales.
    try:
      input_pipeline.create_train_iterator(ml_collections.ConfigDict(dict(config, batch_size=4)), 0)
    except ValueError as e:
      assert 'multiple of the number of devices (8)' in str(e), e
    else:
      raise AssertionError('batch_size=4 on 8 devices was accepted')
    print('SHARDED_OK')
''')


def test_global_batch_sharded_over_8_devices():
  flags = conftest.subprocess_xla_flags('--xla_force_host_platform_device_count=8')
  env = dict(os.environ, XLA_FLAGS=flags,
             CUDA_VISIBLE_DEVICES='', TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', _SHARDED_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
  assert 'SHARDED_OK' in result.stdout, result.stderr[-3000:]
