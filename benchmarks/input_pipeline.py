"""Measures the input pipeline's throughput in clips per second, on this machine.

    python benchmarks/input_pipeline.py [--batch_size=16] [--num_batches=30]

Three streams, each through `create_train_iterator` (decode, resize, flip, one-hot, batch and
the global jax.Array), after a few warm-up batches:

1. the on-the-fly synthetic stream at 128x256, T = 5;
2. a prepared TFDS dataset (seg2vid_synthetic, 128x256, T = 5, with flow, prepared here in a
   temporary data_dir; the stream repeats its epochs), without and with the two-path label
   groups (two more float arrays per clip);
3. the on-the-fly synthetic stream at the demo's 64x64, T = 5, compared with the rate at which
   the demo consumes clips (an assumption, printed).
"""

import gc
import os
import tempfile
import time

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import jax
import ml_collections
import tensorflow_datasets as tfds

from seg2vid_jax import input_pipeline
from seg2vid_jax.data import synthetic_tfds

_BATCH = flags.DEFINE_integer('batch_size', 16, 'Global batch size.')
_BATCHES = flags.DEFINE_integer('num_batches', 50, 'Timed batches per stream.')
_WARMUP = flags.DEFINE_integer('warmup_batches', 10,
                                'Untimed batches first (tf.data autotuning ramps up).')
_PREPARED_CLIPS = flags.DEFINE_integer('prepared_clips', 64, 'Train clips of the TFDS dataset.')
_DEMO_RATE = flags.DEFINE_float(
    'demo_clips_per_second', 8.0, 'Assumed consumption of the demo training at 64x64, T = 5.')


def _config(**overrides):
  config = ml_collections.ConfigDict(dict(
      dataset='synthetic', data_dir=None, image_size=(128, 256), num_frames=5,
      batch_size=_BATCH.value, two_path=False, flip=True, shuffle_buffer=256,
      skip_bad_examples=False))
  config.update(overrides)
  return config


def clips_per_second(config):
  """Times `num_batches` global batches of the training iterator."""
  iterator = input_pipeline.create_train_iterator(config, seed=0)
  for _ in range(_WARMUP.value):
    jax.block_until_ready(next(iterator))
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    jax.block_until_ready(next(iterator))
  rate = _BATCHES.value * config.batch_size / (time.perf_counter() - start)
  # Stop this stream's prefetching threads before the next measurement.
  iterator.close()
  del iterator
  gc.collect()
  time.sleep(2.0)
  return rate


def main(argv):
  del argv
  tfds.disable_progress_bar()
  print(f'{os.cpu_count()} CPU cores, {jax.device_count()} jax device(s), batch '
        f'{_BATCH.value}, {_BATCHES.value} timed batches per stream')

  rate = clips_per_second(_config())
  print(f'synthetic on the fly, 128x256, T=5:                 {rate:7.1f} clips/s')

  with tempfile.TemporaryDirectory() as data_dir:
    prepared = synthetic_tfds.SyntheticConfig(
        name='bench_128x256_t5', height=128, width=256, num_frames=5,
        num_clips={'train': _PREPARED_CLIPS.value, 'validation': 1})
    start = time.perf_counter()
    synthetic_tfds.SyntheticVideo(config=prepared, data_dir=data_dir).download_and_prepare()
    print(f'(prepared {_PREPARED_CLIPS.value} clips in {time.perf_counter() - start:.1f} s)')
    for two_path in (False, True):
      rate = clips_per_second(_config(dataset='seg2vid_synthetic/bench_128x256_t5',
                                      data_dir=data_dir, two_path=two_path))
      print(f'prepared TFDS, 128x256, T=5, two_path={two_path!s:5}: {rate:7.1f} clips/s '
            '(target >= 200)')

  rate = clips_per_second(_config(image_size=(64, 64)))
  print(f'synthetic on the fly, 64x64, T=5:                   {rate:7.1f} clips/s')
  print(f'assumption: the 64x64 demo consumes about {_DEMO_RATE.value:g} clips/s; '
        f'ratio synthetic / demo = {rate / _DEMO_RATE.value:.1f}x '
        f'({"never waits" if rate > _DEMO_RATE.value else "the demo would wait"})')


if __name__ == '__main__':
  app.run(main)
