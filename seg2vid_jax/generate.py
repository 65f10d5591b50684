"""--mode=generate: videos from a label map (and a first frame, or stage 1), from the prior.

Writes, for each of N samples, a GIF and an MP4 (imageio-ffmpeg's bundled ffmpeg) of the first
frame followed by the K generated frames, the forward flows in the Middlebury colour coding,
and the occlusion masks; plus the inputs as seen by the model and one sheet with all samples.
"""

import functools
import json
import os
from typing import Optional

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from seg2vid_jax import checkpoints
from seg2vid_jax import evaluation
from seg2vid_jax.tasks import img2img
from seg2vid_jax import visualize
from seg2vid_jax.ops import conv
from seg2vid_jax.ops import warp


def read_label_map(path: str, size, num_classes: int) -> np.ndarray:
  """A label map PNG of train ids (H, W) int32, checked against the model's classes and size."""
  try:
    labels = np.asarray(Image.open(path))
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot read label map {path}: {e}') from e
  if labels.ndim == 3:
    if not (labels[..., :1] == labels).all():
      raise ValueError(f'label map {path} is a colour image; expected one channel of train ids '
                       f'0..{num_classes - 1}')
    labels = labels[..., 0]
  if labels.shape != tuple(size):
    raise ValueError(f'label map {path} is {labels.shape[0]}x{labels.shape[1]}; the model was '
                     f'trained on {size[0]}x{size[1]}')
  bad = np.unique(labels[labels >= num_classes])
  if bad.size:
    raise ValueError(f'label map {path} has ids {bad[:10].tolist()} that the config does not know '
                     f'(train ids 0..{num_classes - 1}; map ignore/255 to {num_classes - 1})')
  return labels.astype(np.int32)


def read_frame(path: str, size, channels: int) -> np.ndarray:
  """A first frame (H, W, C) float32 in [0, 1], checked against the model's size."""
  try:
    image = Image.open(path).convert('L' if channels == 1 else 'RGB')
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot read first frame {path}: {e}') from e
  if image.size != (size[1], size[0]):
    raise ValueError(f'first frame {path} is {image.size[1]}x{image.size[0]}; the model was '
                     f'trained on {size[0]}x{size[1]}')
  frame = np.asarray(image, np.float32) / 255.0
  return frame.reshape(size[0], size[1], channels)


def sample_videos(model, variables, frame, labels, num_samples: int, seed: int,
                  num_frames: Optional[int] = None):
  """`num_samples` prior samples for one (frame, label map): a dict of (N, F, ...) arrays.

  F = `num_frames` (default K). Beyond K, stage 2 runs again from its last refined frame, with
  the label map warped by the last masked forward flow to follow the scene and the same z
  (IJCV 2020, "long videos"); `labels` holds the (soft, one-hot) label map each pass started
  from, (N, passes, H, W, classes). The image-only model (num_classes = 0) takes `labels`
  None and has no label map to carry along.
  """
  k = model.num_predicted_frames
  num_frames = num_frames or k
  passes = -(-num_frames // k)
  latent_rng, noise_rng = jax.random.split(jax.random.key(seed))
  z = jax.random.normal(latent_rng, (num_samples,) + model.latent_shape)
  noise = jax.random.normal(noise_rng, (num_samples,) + frame.shape)
  video = jnp.broadcast_to(frame[None, None], (num_samples, 1) + frame.shape)
  onehot = None if labels is None else jax.nn.one_hot(
      jnp.broadcast_to(labels, (num_samples,) + labels.shape), model.num_classes)

  @functools.partial(jax.jit, compiler_options=conv.compiler_options())
  def one_pass(variables, video, onehot):
    out = model.apply(variables, video, onehot, noise, z)
    moved = out['flow'][:, -1] * out['mask_fw'][:, -1, ..., None]
    return out, out['refined'][:, -1:], None if onehot is None else warp(onehot, moved)

  outs, starts = [], []
  for _ in range(passes):
    starts.append(onehot)
    out, video, onehot = one_pass(variables, video, onehot)
    outs.append({name: out[name] for name in ('refined', 'warped', 'flow', 'mask_fw',
                                              'mask_bw')})
  result = {name: jnp.concatenate([o[name] for o in outs], axis=1)[:, :num_frames]
            for name in outs[0]}
  if labels is not None:
    result['labels'] = jnp.stack(starts, axis=1)
  return jax.device_get(result)


def first_frame_from_stage1(config, labels):
  """Stage 1: the first frame (H, W, C) that the label map's pix2pixHD generator draws.

  The stage-1 checkpoint is the newest in `config.img2img_workdir`, trained with the config
  file `config.img2img_config`.
  """
  if not (config.get('img2img_workdir') and config.get('img2img_config')):
    raise ValueError('without --first_frame, stage 1 makes it: set --config.img2img_workdir '
                     '(its checkpoints) and --config.img2img_config (its config file)')
  stage1_config = load_config_file(config.img2img_config)
  (gen, _), _, state = checkpoints.restore_state(stage1_config, config.img2img_workdir)
  onehot = jax.nn.one_hot(labels[None], stage1_config.model.num_classes)
  return np.asarray(jax.jit(img2img.generate_frames, static_argnums=0)(
      gen, state.gen_params, onehot))[0]


def load_config_file(path: str):
  """`get_config()` of a config file given by path, or `get_config(arg)` of `path:arg` (as
  `--config=` takes them)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  path, _, arg = path.partition(':')
  if not os.path.exists(path):
    raise FileNotFoundError(f'config file {path} does not exist')
  spec = importlib.util.spec_from_file_location('stage1_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def _rgb_uint8(images):
  """Images in [0, 1] as uint8 RGB (grayscale repeated over three channels)."""
  images = visualize.to_uint8(images)
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def write_outputs(output_dir: str, frame, labels, samples, fps: int = 4):
  """Writes the inputs, each sample's video (GIF, and MP4 unless imageio-ffmpeg has no ffmpeg
  for this platform), flows and masks, and a sheet of all samples."""
  os.makedirs(output_dir, exist_ok=True)
  first = _rgb_uint8(frame)
  Image.fromarray(first).save(os.path.join(output_dir, 'first_frame.png'))
  if labels is not None:  # The image-only model has no label map.
    Image.fromarray(visualize.labels_to_color(labels)).save(
        os.path.join(output_dir, 'label_map_color.png'))
  sheets = []
  for i in range(samples['refined'].shape[0]):
    video = np.concatenate([first[None], _rgb_uint8(samples['refined'][i])])
    visualize.write_gif(os.path.join(output_dir, f'sample_{i}.gif'), video, fps=fps)
    if not visualize.write_mp4(os.path.join(output_dir, f'sample_{i}.mp4'), video, fps=fps):
      logging.warning('No ffmpeg from imageio-ffmpeg on this platform: sample_%d.mp4 not '
                      'written (the GIF is)', i)
    flows = visualize.flow_to_color(samples['flow'][i])
    masks = visualize.mask_to_image(samples['mask_fw'][i])
    for k in range(flows.shape[0]):
      Image.fromarray(flows[k]).save(os.path.join(output_dir, f'sample_{i}_flow_{k + 1}.png'))
      Image.fromarray(masks[k]).save(os.path.join(output_dir, f'sample_{i}_mask_{k + 1}.png'))
    sheets.append({'video': video[1:], 'flow': flows, 'mask': masks})
  visualize.write_gif(os.path.join(output_dir, 'samples.gif'),
                      visualize.sample_sheet_batch(sheets), fps=fps)


def high_frequency_energy(images):
  """Mean Laplacian energy over (..., H, W, C) images in [0, 1] (`evaluation.laplacian_energy`):
  the fine detail they hold (blur lowers it, noise raises it)."""
  return float(np.mean(evaluation.laplacian_energy(images)))


def long_video_stats(frame, samples, k: int):
  """Whether a long video keeps its content: per pass of K frames, the mean forward mask and
  the high-frequency energy of the pass's last frame against the first frame (1: as
  detailed); the per-pass curve tells the first pass's blur from blur that accumulates."""
  mask = np.asarray(samples['mask_fw'])
  passes = -(-mask.shape[1] // k)
  first = max(high_frequency_energy(frame), 1e-12)  # A flat first frame has none.
  energy = [high_frequency_energy(samples['refined'][:, min((i + 1) * k, mask.shape[1]) - 1])
            / first for i in range(passes)]
  return {'mean_mask_fw_per_pass': [float(mask[:, i * k:(i + 1) * k].mean())
                                    for i in range(passes)],
          'high_frequency_energy_per_pass': energy,
          'high_frequency_energy_last_over_first': energy[-1]}


def generate_from_files(config, workdir: str, label_map: str, first_frame: Optional[str],
                        num_samples: int, output_dir: Optional[str], seed: int,
                        num_frames: Optional[int] = None):
  """Writes `num_samples` videos of the latest checkpoint of `workdir` from a label map and a
  first frame, or from the label map alone through stage 1 (see `first_frame_from_stage1`).
  The image-only model (KTH, UCF-101) takes the first frame alone."""
  image_only = not config.model.num_classes
  if image_only and (label_map or not first_frame):
    raise ValueError('the image-only model (config.model.num_classes = 0) generates from '
                     '--first_frame alone, without --label_map')
  if not (image_only or label_map):
    raise ValueError('--mode=generate needs --label_map')
  model, _, state = checkpoints.restore_state(config, workdir)
  labels = None if image_only else read_label_map(label_map, model.image_size,
                                                  model.num_classes)
  if first_frame:
    frame = read_frame(first_frame, model.image_size, model.channels)
  else:
    frame = first_frame_from_stage1(config, labels)
  samples = sample_videos(model, {'params': state.params, 'batch_stats': state.batch_stats},
                          frame, labels, num_samples, seed, num_frames)
  output_dir = output_dir or os.path.join(workdir, 'generated')
  write_outputs(output_dir, frame, labels, samples)
  stats = long_video_stats(frame, samples, model.num_predicted_frames)
  with open(os.path.join(output_dir, 'stats.json'), 'w') as f:
    json.dump(stats, f, indent=1)
  logging.info('Wrote %d sampled videos to %s', num_samples, output_dir)
  print(f'Wrote {num_samples} videos (GIF, MP4), flows and masks to {output_dir}')
  print('Mean forward mask per pass: ' + ', '.join(
      f'{m:.3f}' for m in stats['mean_mask_fw_per_pass']) + '; high-frequency energy of each '
        "pass's last frame / the first frame: " + ', '.join(
            f'{e:.2f}' for e in stats['high_frequency_energy_per_pass']))
  return samples
