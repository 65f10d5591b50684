"""--mode=generate: from a label map and a first frame, from a label map alone, long videos."""

import os

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from PIL import Image

from configs import test as test_config
from configs import test_img2img
from seg2vid_jax import generate, train
from seg2vid_jax.data import synthetic
from seg2vid_jax.ops import warp
from tests import test_tasks
from tests.test_train import read_scalars

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def workdirs(tmp_path_factory):
  """Two steps of stage 2 and of stage 1 (tiny configs), and a label map + first frame."""
  root = tmp_path_factory.mktemp('generate')
  for name, module in (('img2vid', test_config), ('img2img', test_img2img)):
    config = module.get_config()
    config.num_train_steps, config.eval_every_steps, config.sample_every_steps = 2, 0, 0
    config.log_every_steps = 1
    config.num_eval_clips = 8
    train.train_and_evaluate(config, str(root / name))
  label_map, first_frame = synthetic.write_example_inputs(str(root / 'inputs'))
  return root, label_map, first_frame


def test_both_tasks_train_the_losses_recorded_before_the_layout_change(workdirs):
  root = workdirs[0]
  for task in ('img2vid', 'img2img'):
    test_tasks.assert_recorded_losses(task, lambda tag: read_scalars(str(root / task), tag),
                                      (1, 2))


def test_generate_from_label_map_and_first_frame(workdirs):
  root, label_map, first_frame = workdirs
  out = str(root / 'from_frame')
  samples = generate.generate_from_files(test_config.get_config(), str(root / 'img2vid'),
                                         label_map, first_frame, 3, out, seed=0)
  assert samples['refined'].shape == (3, 2, 64, 64, 3)
  video = iio.imread(os.path.join(out, 'sample_0.gif'), index=None)
  assert video.shape[:3] == (3, 64, 64)  # The first frame, then K = 2 generated frames.
  # GIF frames are palette-quantised: the first frame is the input up to that.
  error = np.abs(video[0, ..., :3].astype(int) - np.asarray(Image.open(first_frame)).astype(int))
  assert error.mean() < 6
  for name in ('sample_2_flow_2.png', 'sample_2_mask_1.png', 'samples.gif',
               'label_map_color.png'):
    assert os.path.exists(os.path.join(out, name)), name
  # Different samples of the prior differ; the same seed repeats.
  assert np.abs(samples['refined'][0] - samples['refined'][1]).max() > 1e-4
  again = generate.generate_from_files(test_config.get_config(), str(root / 'img2vid'),
                                       label_map, first_frame, 3, str(root / 'again'), seed=0)
  np.testing.assert_array_equal(again['refined'], samples['refined'])


def test_generate_from_label_map_alone_runs_stage_1(workdirs):
  root, label_map, _ = workdirs
  config = test_config.get_config()
  config.img2img_workdir = str(root / 'img2img')
  config.img2img_config = os.path.join(REPO, 'configs', 'test_img2img.py')
  out = str(root / 'alone')
  generate.generate_from_files(config, str(root / 'img2vid'), label_map, None, 2, out, seed=1)
  # The first frame is stage 1's drawing of the label map.
  stage1 = test_img2img.get_config()
  (gen, _), _, state = train.restore_state(stage1, str(root / 'img2img'))
  labels = np.asarray(Image.open(label_map))
  expected = gen.apply({'params': state.gen_params}, jax.nn.one_hot(labels[None], 20))[0]
  np.testing.assert_allclose(np.asarray(Image.open(os.path.join(out, 'first_frame.png'))),
                             np.round(np.asarray(expected) * 255), atol=1)
  assert iio.imread(os.path.join(out, 'sample_1.gif'), index=None).shape[0] == 3


def test_long_video_repeats_stage_2_with_warped_labels(workdirs):
  root, label_map, first_frame = workdirs
  config = test_config.get_config()
  model, _, state = train.restore_state(config, str(root / 'img2vid'))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  labels = np.asarray(Image.open(label_map)).astype(np.int32)
  frame = np.asarray(Image.open(first_frame), np.float32) / 255
  out = generate.sample_videos(model, variables, frame, labels, 2, seed=3, num_frames=5)
  assert out['refined'].shape == (2, 5, 64, 64, 3)  # 3 passes of K = 2, cut to 5.
  assert out['labels'].shape == (2, 3, 64, 64, 20)
  np.testing.assert_array_equal(out['labels'][:, 0], jax.nn.one_hot(labels, 20)[None]
                                .repeat(2, 0))
  # Each pass starts from the label map of the previous one warped by its last masked flow.
  for p in (1, 2):
    last = 2 * p - 1
    moved = out['flow'][:, last] * out['mask_fw'][:, last, ..., None]
    np.testing.assert_allclose(out['labels'][:, p], warp(out['labels'][:, p - 1], moved),
                               atol=1e-5)


def test_long_video_stats_per_pass():
  """Mask means and Laplacian energies per pass of K frames, the last pass possibly short."""
  frame = np.zeros((4, 4, 1))
  frame[1, 1] = 1.0  # The Laplacian's 2x2 interior: responses 4, -1, -1, 0 -> energy 18/4.
  assert generate.high_frequency_energy(frame) == pytest.approx(18 / 4)
  refined = frame[None, None] * np.array([1, 1, 0.5, 0.5, 0.1])[None, :, None, None, None]
  mask = np.broadcast_to(np.array([1, 0.5, 0.5, 0.5, 0.25])[None, :, None, None, None],
                         (1, 5, 4, 4, 1))
  stats = generate.long_video_stats(frame, {'refined': refined, 'mask_fw': mask}, k=2)
  np.testing.assert_allclose(stats['mean_mask_fw_per_pass'], [0.75, 0.5, 0.25])
  np.testing.assert_allclose(stats['high_frequency_energy_per_pass'], [1, 0.25, 0.01], rtol=1e-6)
  assert stats['high_frequency_energy_last_over_first'] == pytest.approx(0.01)


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
  ids = tmp_path / 'ids.png'
  Image.fromarray(np.full((64, 64), 25, np.uint8)).save(ids)
  with pytest.raises(ValueError, match=r'ids.png has ids \[25\]'):
    generate.read_label_map(str(ids), (64, 64), 20)
  small = tmp_path / 'small.png'
  Image.fromarray(np.zeros((32, 64), np.uint8)).save(small)
  with pytest.raises(ValueError, match='small.png is 32x64; the model was trained on 64x64'):
    generate.read_label_map(str(small), (64, 64), 20)
  broken = tmp_path / 'broken.png'
  broken.write_bytes(b'not a png')
  with pytest.raises(ValueError, match='cannot read first frame .*broken.png'):
    generate.read_frame(str(broken), (64, 64), 3)
  with pytest.raises(ValueError, match='img2img_workdir'):
    generate.first_frame_from_stage1(test_config.get_config(), np.zeros((64, 64), np.int32))


def test_write_outputs_writes_an_mp4_per_sample(tmp_path):
  """Each sample's MP4 holds the first frame and the K generated frames, in order, at the
  model's size (odd sizes padded by one row / column), close to what the GIF shows."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  n, k, h, w = 2, 3, 17, 24
  yy, xx = np.mgrid[0:h, 0:w]
  frame = np.stack([xx / w, yy / h, np.full_like(xx, 0.5, dtype=float)], -1).astype(np.float32)
  refined = np.stack([np.stack([np.clip(frame * 0.7 + 0.1 * (t + 1) * (i + 1), 0, 1)
                                for t in range(k)]) for i in range(n)]).astype(np.float32)
  samples = {'refined': refined, 'flow': np.zeros((n, k, h, w, 2), np.float32),
             'mask_fw': np.ones((n, k, h, w), np.float32)}
  out = tmp_path / 'generated'
  generate.write_outputs(str(out), frame, np.zeros((h, w), np.int32), samples)
  for i in range(n):
    assert os.path.exists(out / f'sample_{i}.gif')
    reader = imageio_ffmpeg.read_frames(str(out / f'sample_{i}.mp4'))
    meta = next(reader)
    assert meta['size'] == (w, h + 1)  # 17 rows padded to 18 for yuv420p.
    back = np.stack([np.frombuffer(b, np.uint8).reshape(h + 1, w, 3) for b in reader])
    assert back.shape[0] == k + 1
    expected = np.round(np.concatenate([frame[None], refined[i]]) * 255)
    error = np.abs(back[:, :h].astype(float) - expected)
    assert error.mean() < 8, error.mean()
    distances = np.abs(back[:, None, :h].astype(float) - expected[None]).mean(axis=(2, 3, 4))
    np.testing.assert_array_equal(distances.argmin(axis=1), np.arange(k + 1))
