"""Tests of the TFDS builders, each prepared for real into a temporary data_dir.

Every test writes a tiny tree of PNGs in the real naming of its dataset, builds it and checks
the stored values (frame order, colours, label ids), then the bad inputs: missing and corrupt
frames, unknown label ids, clips shorter than T, empty splits, in both stop and skip modes.
(`tfds.testing.DatasetBuilderTestCase` would need the `dill` package, so the tests call
`download_and_prepare` themselves.)
"""

import logging
import os

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

tf.config.set_visible_devices([], 'GPU')

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

from seg2vid_jax.data import cityscapes
from seg2vid_jax.data import common
from seg2vid_jax.data import kth
from seg2vid_jax.data import synthetic
from seg2vid_jax.data import synthetic_tfds
from seg2vid_jax.data import video_folder

tfds.disable_progress_bar()


def _png(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _prepare(builder, manual_dir=None):
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder


def _examples(builder, split):
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


# ----------------------------------------------------------------------------------------------
# Synthetic.


def test_synthetic_builder_stores_make_clip_exactly(tmp_path):
  config = synthetic_tfds.SyntheticConfig(
      name='tiny', height=16, width=32, num_frames=3, seed=7,
      num_clips={'train': 3, 'validation': 2, 'test': 1})
  builder = _prepare(synthetic_tfds.SyntheticVideo(config=config, data_dir=str(tmp_path)))
  splits = builder.info.splits
  assert (splits['train'].num_examples, splits['validation'].num_examples,
          splits['test'].num_examples) == (3, 2, 1)
  examples = {e['clip_id'].decode(): e for e in _examples(builder, 'validation')}
  assert sorted(examples) == ['validation_000000', 'validation_000001']
  clip = synthetic.make_clip((7, synthetic_tfds.SPLIT_CODES['validation'], 1), 16, 32, 3)
  stored = examples['validation_000001']
  np.testing.assert_array_equal(stored['video'], clip['video'])
  np.testing.assert_array_equal(stored['labels'][..., 0], clip['labels'])
  np.testing.assert_array_equal(stored['label'][..., 0], clip['labels'][0])
  assert stored['flow'].dtype == np.float16  # Rounded for space: < 1e-3 of the image size.
  np.testing.assert_array_equal(stored['flow'], clip['flow'].astype(np.float16))
  np.testing.assert_allclose(stored['flow'], clip['flow'], atol=1e-3)
  np.testing.assert_array_equal(stored['valid'], clip['valid'])


def test_synthetic_builder_rejects_empty_split(tmp_path):
  config = synthetic_tfds.SyntheticConfig(name='empty', height=16, width=16, num_frames=2,
                                          num_clips={'train': 2, 'validation': 0})
  with pytest.raises(ValueError, match=r"\['validation'\] would be empty"):
    _prepare(synthetic_tfds.SyntheticVideo(config=config, data_dir=str(tmp_path)))


# ----------------------------------------------------------------------------------------------
# Cityscapes.

_CS_SIZE = (8, 16)  # Source frames (H, W); the builder resizes them to 4x8.


def _cs_frame_value(seq, frame):
  return (seq * 37 + frame * 5) % 250


def _write_cityscapes(root, labels='gtfine', splits=(('train', 2), ('val', 1))):
  """Snippets of frames 000010..000014 with the annotated frame 000011 (like frame 19 of 30)."""
  for split, num_seq in splits:
    for seq in range(num_seq):
      city = 'aachen' if split == 'train' else 'lindau'
      for frame in range(10, 15):
        stem = f'{city}_{seq:06d}_{frame:06d}'
        value = _cs_frame_value(seq, frame)
        _png(os.path.join(root, 'leftImg8bit_sequence', split, city, f'{stem}_leftImg8bit.png'),
             np.full(_CS_SIZE + (3,), value))
        raw = np.zeros(_CS_SIZE, np.uint8)
        if labels == 'gtfine' and frame == 11:
          raw[:, :8] = 7  # road -> 0
          raw[:, 8:] = 26  # car -> 13
          raw[:2, :2] = 0  # unlabeled -> 19 (a 2x2 block survives the 2x nearest resize)
          _png(os.path.join(root, 'gtFine', split, city, f'{stem}_gtFine_labelIds.png'), raw)
        if labels == 'ssmask':
          raw[:, :8] = 10  # sky (train id)
          raw[:, 8:] = 11  # person
          raw[:2, :2] = 255  # ignore -> 19
          _png(os.path.join(root, 'ssmask', split, city, f'{stem}_ssmask.png'), raw)


def _cs_builder(tmp_path, labels='gtfine', num_frames=3, skip=False, clip_stride=0):
  config = cityscapes.CityscapesConfig(name=f'test_{labels}', height=4, width=8,
                                       num_frames=num_frames, labels=labels,
                                       clip_stride=clip_stride)
  return cityscapes.Cityscapes(config=config, data_dir=str(tmp_path / 'data'),
                               skip_bad_examples=skip)


def test_cityscapes_gtfine_clips_start_at_annotated_frame(tmp_path):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual))
  builder = _prepare(_cs_builder(tmp_path), str(manual))
  assert builder.info.splits['train'].num_examples == 2
  assert builder.info.splits['validation'].num_examples == 1
  examples = {e['clip_id'].decode(): e for e in _examples(builder, 'train')}
  assert sorted(examples) == ['aachen_000000_000011', 'aachen_000001_000011']
  e = examples['aachen_000001_000011']
  assert e['video'].shape == (3, 4, 8, 3)
  np.testing.assert_array_equal(e['video'][:, 0, 0, 0],
                                [_cs_frame_value(1, f) for f in (11, 12, 13)])
  label = e['label'][..., 0]
  assert label.shape == (4, 8)
  assert label[0, 0] == 19  # labelId 0 (unlabeled) -> 19
  np.testing.assert_array_equal(label[1:, :4], 0)  # road
  np.testing.assert_array_equal(label[:, 4:], 13)  # car


def test_cityscapes_ssmask_clips_every_stride(tmp_path):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual), labels='ssmask')
  builder = _prepare(_cs_builder(tmp_path, labels='ssmask', num_frames=2, clip_stride=2),
                     str(manual))
  ids = sorted(e['clip_id'].decode() for e in _examples(builder, 'train'))
  # Frames 10..14, T = 2, stride 2: starts 10 and 12 (14 would run past the snippet).
  assert ids == ['aachen_000000_000010', 'aachen_000000_000012', 'aachen_000001_000010',
                 'aachen_000001_000012']
  e = _examples(builder, 'validation')[0]
  label = e['label'][..., 0]
  assert label[0, 0] == 19 and label[2, 2] == 10 and label[2, 6] == 11


def test_cityscapes_clip_shorter_than_num_frames(tmp_path):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual))
  # Annotated frame 11, sequence ends at 14: 5 frames are not there.
  with pytest.raises(common.BadInputError, match=r'aachen_000000_000011_leftImg8bit.png: clip is '
                     r'shorter than 5 frames'):
    _prepare(_cs_builder(tmp_path, num_frames=5), str(manual))


def test_cityscapes_missing_frame_stops_or_skips(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual))
  missing = manual / 'leftImg8bit_sequence/train/aachen/aachen_000001_000012_leftImg8bit.png'
  os.remove(missing)
  with pytest.raises(common.BadInputError, match=f'{missing}: file is missing'):
    _prepare(_cs_builder(tmp_path), str(manual))
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_cs_builder(tmp_path, skip=True), str(manual))
  assert builder.info.splits['train'].num_examples == 1
  assert 'skipped 1 of 2 clips (1 missing file)' in caplog.text


def test_cityscapes_corrupt_frame(tmp_path):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual))
  corrupt = manual / 'leftImg8bit_sequence/val/lindau/lindau_000000_000013_leftImg8bit.png'
  corrupt.write_bytes(b'\x89PNG not really')
  with pytest.raises(common.BadInputError, match=f'{corrupt}: cannot decode image'):
    _prepare(_cs_builder(tmp_path), str(manual))


def test_cityscapes_unknown_label_id(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual))
  bad = manual / 'gtFine/train/aachen/aachen_000000_000011_gtFine_labelIds.png'
  raw = np.full(_CS_SIZE, 7, np.uint8)
  raw[0, 0] = 40  # labelIds stop at 33.
  _png(str(bad), raw)
  with pytest.raises(common.BadInputError, match=rf'{bad}: label ids \[40\] are outside'):
    _prepare(_cs_builder(tmp_path), str(manual))
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_cs_builder(tmp_path, skip=True), str(manual))
  assert builder.info.splits['train'].num_examples == 1
  assert '1 label id outside the known set' in caplog.text


def test_cityscapes_empty_and_missing_split(tmp_path):
  manual = tmp_path / 'manual'
  _write_cityscapes(str(manual), splits=(('train', 1),))
  with pytest.raises(common.BadInputError, match='leftImg8bit_sequence/val does not exist'):
    _prepare(_cs_builder(tmp_path), str(manual))
  os.makedirs(manual / 'leftImg8bit_sequence/val/lindau')
  with pytest.raises(common.BadInputError, match="no clip found for split 'val'"):
    _prepare(_cs_builder(tmp_path), str(manual))


# ----------------------------------------------------------------------------------------------
# KTH.


def _write_kth(root, action='walking', sequences=(('person01', 'd1', 7), ('person17', 'd2', 4))):
  for person, d, num in sequences:
    for n in range(1, num + 1):
      _png(os.path.join(root, action, f'{person}_{action}_{d}', f'image-{n:03d}_128x128.png'),
           np.full((6, 6), 10 * n))


def _kth_builder(tmp_path, skip=False):
  config = kth.KthConfig(name='walking_test', actions=('walking',), height=6, width=6,
                         num_frames=3)
  return kth.Kth(config=config, data_dir=str(tmp_path / 'data'), skip_bad_examples=skip)


def test_kth_clips_by_person_split(tmp_path):
  manual = tmp_path / 'manual'
  _write_kth(str(manual))
  builder = _prepare(_kth_builder(tmp_path), str(manual))
  train = {e['clip_id'].decode(): e for e in _examples(builder, 'train')}
  # 7 frames, T = 3, stride 3: clips start at frames 1 and 4.
  assert sorted(train) == ['person01_walking_d1/image-001_128x128.png',
                           'person01_walking_d1/image-004_128x128.png']
  video = train['person01_walking_d1/image-004_128x128.png']['video']
  assert video.shape == (3, 6, 6, 1)
  np.testing.assert_array_equal(video[:, 0, 0, 0], [40, 50, 60])
  assert builder.info.splits['test'].num_examples == 1  # person17: 4 frames -> one clip.


def test_kth_short_sequence_stops_or_skips(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_kth(str(manual), sequences=(('person01', 'd1', 7), ('person02', 'd1', 2),
                                     ('person17', 'd1', 3)))
  with pytest.raises(common.BadInputError, match='person02_walking_d1: sequence has 2 frames, '
                     'shorter than a clip of 3'):
    _prepare(_kth_builder(tmp_path), str(manual))
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_kth_builder(tmp_path, skip=True), str(manual))
  assert builder.info.splits['train'].num_examples == 2
  assert '1 clip shorter than num_frames' in caplog.text


def test_kth_gap_in_numbering_is_a_missing_frame(tmp_path):
  manual = tmp_path / 'manual'
  _write_kth(str(manual))
  gap = manual / 'walking/person01_walking_d1/image-005_128x128.png'
  os.remove(gap)
  with pytest.raises(common.BadInputError, match=f'{gap}: file is missing'):
    _prepare(_kth_builder(tmp_path), str(manual))


def test_kth_empty_split(tmp_path):
  manual = tmp_path / 'manual'
  _write_kth(str(manual), sequences=(('person01', 'd1', 4),))  # No test person.
  with pytest.raises(common.BadInputError, match='persons 17-25 .*split test would be empty'):
    _prepare(_kth_builder(tmp_path), str(manual))


# ----------------------------------------------------------------------------------------------
# Generic video folders.


def _write_folders(root, with_labels=True, bad_label=None):
  for split, clips in (('train', ('clip_a', 'clip_b')), ('validation', ('clip_c',))):
    for k, clip in enumerate(clips):
      for i in (1, 2, 10):  # Natural order: frame2 before frame10.
        _png(os.path.join(root, split, clip, f'frame{i}.png'), np.full((8, 8, 3), 20 * i + k))
      if with_labels:
        label = np.full((8, 8), 13, np.uint8)
        label[:, :4] = 255  # ignore -> 19
        if bad_label is not None and clip == 'clip_b':
          label[0, 0] = bad_label
        _png(os.path.join(root, split, clip, 'label.png'), label)


def _folder_builder(tmp_path, with_labels=True, skip=False, num_frames=3):
  config = video_folder.VideoFolderConfig(name=f'test_t{num_frames}', height=4, width=4,
                                          num_frames=num_frames,
                                          with_labels=with_labels)
  return video_folder.VideoFolder(config=config, data_dir=str(tmp_path / 'data'),
                                  skip_bad_examples=skip)


def test_video_folder_with_labels(tmp_path):
  manual = tmp_path / 'manual'
  _write_folders(str(manual))
  builder = _prepare(_folder_builder(tmp_path), str(manual))
  assert set(builder.info.splits) == {'train', 'validation'}
  train = {e['clip_id'].decode(): e for e in _examples(builder, 'train')}
  video = train['clip_b_00000']['video']
  np.testing.assert_array_equal(video[:, 0, 0, 0], [21, 41, 201])  # frame1, frame2, frame10
  label = train['clip_b_00000']['label'][..., 0]
  np.testing.assert_array_equal(label[:, :2], 19)
  np.testing.assert_array_equal(label[:, 2:], 13)


def test_video_folder_without_labels_has_no_label_feature(tmp_path):
  manual = tmp_path / 'manual'
  _write_folders(str(manual), with_labels=False)
  builder = _prepare(_folder_builder(tmp_path, with_labels=False, num_frames=2), str(manual))
  assert 'label' not in builder.info.features
  e = _examples(builder, 'validation')[0]
  np.testing.assert_array_equal(e['video'][:, 0, 0, 0], [20, 40])


def test_video_folder_bad_label_and_short_clip(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_folders(str(manual), bad_label=25)
  bad = manual / 'train/clip_b/label.png'
  with pytest.raises(common.BadInputError, match=rf'{bad}: label ids \[25\] are outside'):
    _prepare(_folder_builder(tmp_path), str(manual))
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_folder_builder(tmp_path, skip=True), str(manual))
  assert builder.info.splits['train'].num_examples == 1
  assert 'skipped 1 of 2 clips (1 label id outside the known set)' in caplog.text
  with pytest.raises(common.BadInputError, match='clip_a: 3 frames, shorter than a clip of 4'):
    _prepare(_folder_builder(tmp_path, num_frames=4), str(manual))


def test_video_folder_missing_label_and_empty_split(tmp_path):
  manual = tmp_path / 'manual'
  _write_folders(str(manual))
  os.remove(manual / 'validation/clip_c/label.png')
  with pytest.raises(common.BadInputError, match='clip_c/label.png: file is missing'):
    _prepare(_folder_builder(tmp_path), str(manual))
  # With skipping the only validation clip goes, and an empty split is still an error.
  with pytest.raises(common.BadInputError, match='validation: no usable clip is left'):
    _prepare(_folder_builder(tmp_path, skip=True), str(manual))
  empty = tmp_path / 'empty'
  os.makedirs(empty / 'train')
  with pytest.raises(common.BadInputError, match='has no clip folder'):
    _prepare(_folder_builder(tmp_path), str(empty))
