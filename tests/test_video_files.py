"""Tests of the video-file datasets: KTH and UCF-101 read as distributed (.avi), for real.

Every test writes tiny MPEG-4 part 2 AVIs (the codec of the KTH and UCF-101 files) with the
ffmpeg of imageio-ffmpeg, in the real names and layouts, with known content (a constant grey or
colour per frame), builds them into a temporary data_dir and checks the stored values: which
clips there are (sequence-file ranges, split lists, the group rule), that each clip holds the
decoded frames at the expected indices, the resize, and the bad files (truncated, unreadable,
too short, missing) in both stop and skip modes.
"""

import logging
import os
import struct

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import imageio_ffmpeg
import jax
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

tf.config.set_visible_devices([], 'GPU')

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

from seg2vid_jax import input_pipeline
from seg2vid_jax.data import common
from seg2vid_jax.data import kth
from seg2vid_jax.data import ucf101

tfds.disable_progress_bar()

KTH_SIZE = (120, 160)  # (H, W) of the KTH videos.
UCF_SIZE = (24, 32)  # Small stand-in for UCF-101's 240x320.


def _write_avi(path, frames, tag='DX50'):
  """Frames (N, H, W, 3) uint8 as an MPEG-4 part 2 AVI (fourcc DX50 as KTH, XVID as UCF-101)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  h, w = frames.shape[1:3]
  writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=25, codec='mpeg4', quality=None,
                                       macro_block_size=1, ffmpeg_log_level='error',
                                       output_params=['-vtag', tag, '-qscale:v', '2'])
  writer.send(None)
  for frame in frames:
    writer.send(np.ascontiguousarray(frame))
  writer.close()


def _grey(t):
  """The grey level of frame t (0-based) of a KTH test video: 7 levels apart."""
  return 20 + 7 * t


def _kth_video(num_frames):
  return np.stack([np.full(KTH_SIZE + (3,), _grey(t), np.uint8) for t in range(num_frames)])


def _colour(t):
  """The colour of frame t (0-based) of a UCF-101 test video."""
  return (20 + 15 * t, 235 - 15 * t, 90 + 5 * t)


def _ucf_video(num_frames):
  return np.stack([np.broadcast_to(np.array(_colour(t), np.uint8), UCF_SIZE + (3,))
                   for t in range(num_frames)])


def _prepare(builder, manual_dir):
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _examples(builder, split):
  return {e['clip_id'].decode(): e
          for e in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))}


# ----------------------------------------------------------------------------------------------
# Decoding (common.read_video).


def test_read_video_values_resize_and_bad_files(tmp_path):
  yy, xx = np.mgrid[0:KTH_SIZE[0], 0:KTH_SIZE[1]]
  frames = np.stack([np.stack([xx + 10 * t, yy + 5 * t, np.full_like(xx, 30 * t)], -1)
                     for t in range(6)]).astype(np.uint8)  # Smooth gradients, distinct frames.
  path = tmp_path / 'v.avi'
  _write_avi(path, frames)
  native = common.read_video(path, KTH_SIZE, 'RGB')
  assert native.shape == (6,) + KTH_SIZE + (3,) and native.dtype == np.uint8
  assert np.abs(native.astype(int) - frames).mean() < 2  # MPEG-4 at qscale 2: small loss.
  # Resized and converted exactly as common.read_image treats the same frame as a PNG.
  small = common.read_video(path, (128, 128), 'L')
  assert small.shape == (6, 128, 128)
  for t in (0, 5):
    png = tmp_path / f'frame{t}.png'
    Image.fromarray(native[t]).save(png)
    np.testing.assert_array_equal(small[t], common.read_image(png, (128, 128), 'L'))

  with pytest.raises(common.BadInputError, match=f'{tmp_path}/missing.avi: file is missing'):
    common.read_video(tmp_path / 'missing.avi', KTH_SIZE, 'L')
  data = path.read_bytes()
  truncated = tmp_path / 'truncated.avi'
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(common.BadInputError, match=rf'{truncated}: truncated: the file has '
                     rf'{len(data) // 2} bytes, its RIFF header announces {len(data)}') as e:
    common.read_video(truncated, KTH_SIZE, 'L')
  assert e.value.reason == 'truncated video'
  not_avi = tmp_path / 'not_avi.avi'
  not_avi.write_bytes(b'\x00\x01 this is no video' * 50)
  with pytest.raises(common.BadInputError, match=f'{not_avi}: not an AVI file'):
    common.read_video(not_avi, KTH_SIZE, 'L')
  # A RIFF AVI header of the right size around nothing ffmpeg can read.
  unreadable = tmp_path / 'unreadable.avi'
  unreadable.write_bytes(b'RIFF' + struct.pack('<I', 2000 - 8) + b'AVI ' + bytes(1988))
  with pytest.raises(common.BadInputError, match=f'{unreadable}: ffmpeg cannot decode the video '
                     r'\(.*Invalid data') as e:
    common.read_video(unreadable, KTH_SIZE, 'L')
  assert e.value.reason == 'corrupt video'
  empty = tmp_path / 'no_frames.avi'
  writer = imageio_ffmpeg.write_frames(str(empty), (16, 16), codec='mpeg4', macro_block_size=1)
  writer.send(None)
  writer.close()  # ffmpeg writes the AVI headers and no frame.
  with pytest.raises(common.BadInputError, match=f'{empty}: video has no frames') as e:
    common.read_video(empty, (16, 16), 'L')
  assert e.value.reason == 'video without frames'


# ----------------------------------------------------------------------------------------------
# KTH as distributed.

_SEQUENCES = (
    'KTH action database: the subsequences used for the evaluation\n'
    'person01_boxing_d1\t\tframes\t1-95, 96-185, 186-245, 246-360\n'
    'person01_walking_d1\t\tframes\t1-10, 11-19,20-30 ,\n'  # Irregular commas and spaces.
    '\n'
    'person17_walking_d1  frames   1-6,\t7-14\r\n'
    'person13_walking_d3\t\tframes\t1-50\n'  # No such video: ignored.
    'person05_walking_d1\t\tframes\n'  # No range: the whole video.
)


def _write_kth_avis(root, videos=(('person01', 'd1', 30), ('person02', 'd2', 12),
                                  ('person17', 'd1', 14))):
  for person, d, num in videos:
    _write_avi(os.path.join(root, 'walking', f'{person}_walking_{d}_uncomp.avi'),
               _kth_video(num))


def _kth_builder(tmp_path, name='walking_avi', skip=False, **kwargs):
  config = kth.KthConfig(name=name, actions=('walking',), num_frames=4, **kwargs)
  return kth.Kth(config=config, data_dir=str(tmp_path / 'data'), skip_bad_examples=skip)


def test_kth_sequence_file_parsing(tmp_path):
  path = tmp_path / '00sequences.txt'
  path.write_text(_SEQUENCES + 'person01_walking_d1 frames 1-5\n'  # Repeated: the first stays.
                  'person02_walking_d1 frames 9-3, 1-8\n')  # A reversed range is dropped.
  assert kth.read_sequence_file(path) == {
      'person01_boxing_d1': [(1, 95), (96, 185), (186, 245), (246, 360)],
      'person01_walking_d1': [(1, 10), (11, 19), (20, 30)],
      'person17_walking_d1': [(1, 6), (7, 14)],
      'person13_walking_d3': [(1, 50)],
      'person02_walking_d1': [(1, 8)],
  }
  os.makedirs(tmp_path / 'walking')
  os.makedirs(tmp_path / 'kth_docs')
  (tmp_path / 'kth_docs' / '00sequences.txt').write_text('')
  assert kth.find_sequence_files(tmp_path) == [str(path),
                                               str(tmp_path / 'kth_docs' / '00sequences.txt')]


def test_kth_avi_clips_follow_sequence_ranges(tmp_path):
  manual = tmp_path / 'manual'
  _write_kth_avis(manual)
  (manual / '00sequences.txt').write_text(_SEQUENCES)
  builder = _prepare(_kth_builder(tmp_path), manual)
  train = _examples(builder, 'train')
  # person01: ranges 1-10, 11-19, 20-30, T = 4 every 4 frames inside each range; person02 has no
  # line, so its whole 12 frames: 1-4, 5-8, 9-12. Persons 1-16 train.
  assert sorted(train) == [
      f'person01_walking_d1_uncomp.avi/frames-{a:04d}-{a + 3:04d}' for a in (1, 5, 11, 15, 20, 24)
  ] + [f'person02_walking_d2_uncomp.avi/frames-{a:04d}-{a + 3:04d}' for a in (1, 5, 9)]
  decoded = common.read_video(manual / 'walking/person01_walking_d1_uncomp.avi', (128, 128), 'L')
  assert decoded.shape == (30, 128, 128)
  for start in (1, 11, 24):
    video = train[f'person01_walking_d1_uncomp.avi/frames-{start:04d}-{start + 3:04d}']['video']
    assert video.shape == (4, 128, 128, 1)  # 160x120 resized to 128x128, one channel.
    np.testing.assert_array_equal(video[..., 0], decoded[start - 1:start + 3])
    levels = video.reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(levels, [_grey(t) for t in range(start - 1, start + 3)], atol=3)
  # person17 (test): 1-6 holds 1-4, 7-14 holds 7-10 and 11-14.
  test = _examples(builder, 'test')
  assert sorted(test) == [f'person17_walking_d1_uncomp.avi/frames-{a:04d}-{a + 3:04d}'
                          for a in (1, 7, 11)]
  levels = test['person17_walking_d1_uncomp.avi/frames-0011-0014']['video'].reshape(4, -1).mean(1)
  np.testing.assert_allclose(levels, [_grey(t) for t in range(10, 14)], atol=3)
  # Without the ranges: clips every 4 frames of the whole video (1, 5, ..., 25 of 30 frames).
  whole = _prepare(_kth_builder(tmp_path, name='whole', sequence_ranges=False), manual)
  ids = sorted(i for i in _examples(whole, 'train') if i.startswith('person01'))
  assert ids == [f'person01_walking_d1_uncomp.avi/frames-{a:04d}-{a + 3:04d}'
                 for a in range(1, 26, 4)]


def test_kth_frames_and_videos_together(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_kth_avis(manual, videos=(('person02', 'd1', 8), ('person03', 'd1', 8),
                                  ('person17', 'd1', 4)))
  for person in ('person01', 'person02'):  # person02 has both: its frames are read.
    for n in range(1, 7):
      path = manual / 'walking' / f'{person}_walking_d1' / f'image-{n:03d}_128x128.png'
      os.makedirs(path.parent, exist_ok=True)
      Image.fromarray(np.full((128, 128), 200 + n, np.uint8)).save(path)
  # The sequence file's range numbers the frames of folders (image-<n>) like those of videos.
  (manual / '00sequences.txt').write_text('person01_walking_d1 frames 2-5, 6-6\n'
                                          'person03_walking_d1 frames 3-20\n')
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_kth_builder(tmp_path), manual)
  train = _examples(builder, 'train')
  assert sorted(train) == ['person01_walking_d1/image-002_128x128.png',
                           'person02_walking_d1/image-001_128x128.png',
                           'person03_walking_d1_uncomp.avi/frames-0003-0006']
  np.testing.assert_array_equal(
      train['person01_walking_d1/image-002_128x128.png']['video'][:, 0, 0, 0], [202, 203, 204, 205])
  levels = train['person03_walking_d1_uncomp.avi/frames-0003-0006']['video'].reshape(4, -1).mean(1)
  np.testing.assert_allclose(levels, [_grey(t) for t in range(2, 6)], atol=3)
  # The range 3-20 of an 8-frame video is clamped, with a warning naming the file.
  assert 'person03_walking_d1_uncomp.avi: frame range 3-20 of 00sequences.txt reaches beyond' in (
      caplog.text)


def test_kth_bad_videos_stop_or_skip(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_kth_avis(manual, videos=(('person01', 'd1', 12), ('person02', 'd1', 12),
                                  ('person03', 'd1', 3), ('person17', 'd1', 8)))
  walking = manual / 'walking'
  corrupt = walking / 'person02_walking_d1_uncomp.avi'
  data = corrupt.read_bytes()
  corrupt.write_bytes(data[:len(data) // 3])
  (walking / 'person04_walking_d1_uncomp.avi').write_bytes(b'not a video at all')
  with pytest.raises(common.BadInputError,
                     match=f'{corrupt}: truncated: the file has {len(data) // 3} bytes'):
    _prepare(_kth_builder(tmp_path), manual)
  corrupt.write_bytes(data)  # Repaired: next, the 3-frame video stops the build.
  short = walking / 'person03_walking_d1_uncomp.avi'
  with pytest.raises(common.BadInputError,
                     match=f'{short}: sequence has 3 frames, shorter than a clip of 4'):
    _prepare(_kth_builder(tmp_path), manual)
  corrupt.write_bytes(data[:len(data) // 3])
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_kth_builder(tmp_path, skip=True), manual)
  assert sorted(_examples(builder, 'train')) == [
      f'person01_walking_d1_uncomp.avi/frames-{a:04d}-{a + 3:04d}' for a in (1, 5, 9)]
  assert builder.info.splits['test'].num_examples == 2
  assert ('skipped 3 of 4 videos (1 clip shorter than num_frames, 1 corrupt video, '
          '1 truncated video)') in caplog.text
  assert 'person04_walking_d1_uncomp.avi: not an AVI file' in caplog.text


# ----------------------------------------------------------------------------------------------
# UCF-101 as distributed.

# (class folder, file, frames): groups 1-7 are split 1's test videos, groups 8-14 split 2's.
_UCF_VIDEOS = (
    ('ApplyEyeMakeup', 'v_ApplyEyeMakeup_g01_c01.avi', 9),
    ('ApplyEyeMakeup', 'v_ApplyEyeMakeup_g08_c01.avi', 12),
    ('ApplyEyeMakeup', 'v_ApplyEyeMakeup_g08_c02.avi', 8),
    ('HandstandPushups', 'v_HandStandPushups_g02_c01.avi', 8),  # Files spell it so.
    ('HandstandPushups', 'v_HandStandPushups_g20_c03.avi', 4),
)


def _write_ucf(root, lists=True):
  for cls, name, num in _UCF_VIDEOS:
    _write_avi(os.path.join(root, 'UCF-101', cls, name), _ucf_video(num), tag='XVID')
  if lists:  # As distributed: CRLF line ends, class indices in the train list only.
    os.makedirs(os.path.join(root, 'ucfTrainTestlist'))
    with open(os.path.join(root, 'ucfTrainTestlist', 'trainlist01.txt'), 'w', newline='') as f:
      f.write('ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n'
              'HandstandPushups/v_HandStandPushups_g20_c03.avi 37\r\n')
    with open(os.path.join(root, 'ucfTrainTestlist', 'testlist01.txt'), 'w', newline='') as f:
      f.write('ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n'
              'HandstandPushups/v_HandStandPushups_g02_c01.avi\r\n')
    # v_ApplyEyeMakeup_g08_c02.avi is in neither list: not used.


def _ucf_builder(tmp_path, name='test', skip=False, **kwargs):
  config = ucf101.Ucf101Config(name=name, num_frames=4, **kwargs)
  return ucf101.Ucf101(config=config, data_dir=str(tmp_path / 'data'), skip_bad_examples=skip)


def _ids(entry, starts, t=4):
  return [f'{entry}/frames-{a + 1:04d}-{a + t:04d}' for a in starts]


def test_ucf101_official_split_lists(tmp_path):
  manual = tmp_path / 'manual'
  _write_ucf(manual)
  builder = _prepare(_ucf_builder(tmp_path), manual)
  train = _examples(builder, 'train')
  assert sorted(train) == (_ids('ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', (0, 4, 8)) +
                           _ids('HandstandPushups/v_HandStandPushups_g20_c03.avi', (0,)))
  path = manual / 'UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi'
  decoded = common.read_video(path, (128, 128), 'RGB')
  video = train['ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi/frames-0005-0008']['video']
  assert video.shape == (4, 128, 128, 3)  # 32x24 resized to 128x128, RGB.
  np.testing.assert_array_equal(video, decoded[4:8])
  np.testing.assert_allclose(video.reshape(4, -1, 3).mean(axis=1),
                             [_colour(t) for t in range(4, 8)], atol=4)
  test = _examples(builder, 'test')
  assert sorted(test) == (_ids('ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi', (0, 4)) +
                          _ids('HandstandPushups/v_HandStandPushups_g02_c01.avi', (0, 4)))
  # A class subset.
  subset = _prepare(_ucf_builder(tmp_path, name='hp', classes=('HandstandPushups',)), manual)
  assert sorted(_examples(subset, 'test')) == _ids(
      'HandstandPushups/v_HandStandPushups_g02_c01.avi', (0, 4))
  with pytest.raises(ValueError, match=r"classes \['Juggling'\] have no folder"):
    _prepare(_ucf_builder(tmp_path, name='bad', classes=('Juggling',)), manual)


def test_ucf101_group_rule_without_lists(tmp_path):
  manual = tmp_path / 'manual'
  _write_ucf(manual, lists=False)
  split1 = _prepare(_ucf_builder(tmp_path, name='s1', clip_stride=2), manual)
  # Split 1: groups 1-7 test. Clips every 2 frames.
  assert sorted(_examples(split1, 'test')) == (
      _ids('ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi', (0, 2, 4)) +
      _ids('HandstandPushups/v_HandStandPushups_g02_c01.avi', (0, 2, 4)))
  assert split1.info.splits['train'].num_examples == 5 + 3 + 1  # g08_c01, g08_c02, g20_c03.
  # Split 2: groups 8-14 test.
  split2 = _prepare(_ucf_builder(tmp_path, name='s2', split_number=2), manual)
  assert sorted(_examples(split2, 'test')) == (
      _ids('ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', (0, 4, 8)) +
      _ids('ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c02.avi', (0, 4)))
  # One list without the other is an error.
  os.makedirs(manual / 'ucfTrainTestlist')
  (manual / 'ucfTrainTestlist' / 'testlist01.txt').write_text(
      'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n')
  with pytest.raises(common.BadInputError, match='trainlist01.txt does not exist'):
    _prepare(_ucf_builder(tmp_path, name='s1b'), manual)


def test_ucf101_bad_videos_stop_or_skip(tmp_path, caplog):
  manual = tmp_path / 'manual'
  _write_ucf(manual)
  with open(manual / 'ucfTrainTestlist' / 'trainlist01.txt', 'a') as f:
    f.write('ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi 1\n')  # Listed, not on disk.
  missing = manual / 'UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g09_c01.avi'
  with pytest.raises(common.BadInputError, match=f'{missing}: file is missing'):
    _prepare(_ucf_builder(tmp_path), manual)
  truncated = manual / 'UCF-101/HandstandPushups/v_HandStandPushups_g20_c03.avi'
  data = truncated.read_bytes()
  truncated.write_bytes(data[:len(data) // 2])
  short = manual / 'UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi'
  _write_avi(short, _ucf_video(3), tag='XVID')
  with caplog.at_level(logging.WARNING):
    builder = _prepare(_ucf_builder(tmp_path, skip=True), manual)
  assert sorted(_examples(builder, 'train')) == _ids(
      'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi', (0, 4, 8))
  assert sorted(_examples(builder, 'test')) == _ids(
      'HandstandPushups/v_HandStandPushups_g02_c01.avi', (0, 4))
  assert 'skipped 2 of 3 videos (1 missing file, 1 truncated video)' in caplog.text
  assert 'skipped 1 of 2 videos (1 clip shorter than num_frames)' in caplog.text
  assert f'{short}: video has 3 frames, shorter than a clip of 4' in caplog.text


def test_ucf101_short_name_in_the_input_pipeline(tmp_path):
  """dataset='ucf101' prepares seg2vid_ucf101 for image_size/num_frames/ucf_split/classes."""
  manual = tmp_path / 'manual'
  _write_ucf(manual)
  config = ml_collections.ConfigDict(dict(
      dataset='ucf101', ucf_split=1, classes=('ApplyEyeMakeup',), data_dir=str(tmp_path / 'data'),
      manual_dir=str(manual), image_size=(16, 16), num_frames=3, batch_size=1, two_path=False,
      flip=False, skip_bad_examples=False, eval_split='test', num_eval_clips=None))
  batches = list(input_pipeline.create_eval_iterator(
      config, sharding=input_pipeline.data_sharding(jax.devices()[:1])))
  assert os.path.isdir(tmp_path / 'data' / 'seg2vid_ucf101' / 'split1_ApplyEyeMakeup_16x16_t3')
  # v_ApplyEyeMakeup_g01_c01: 9 frames, clips 1-3, 4-6, 7-9.
  assert len(batches) == 3
  videos = sorted((np.asarray(b['video'][0]) for b in batches), key=lambda v: v[0, ..., 0].mean())
  assert videos[0].shape == (3, 16, 16, 3)
  for k, video in enumerate(videos):
    np.testing.assert_allclose(video.reshape(3, -1, 3).mean(axis=1) * 255,
                               [_colour(t) for t in range(3 * k, 3 * k + 3)], atol=4)
