"""Input pipeline: TFDS clips or on-the-fly synthetic clips -> globally sharded jax batches.

Each process reads its own part of the split (`tfds.split_for_jax_process`), decodes, resizes
(nearest for label maps), augments (a horizontal flip flips the frames, the label map, `valid`,
and flips and negates the x flow), batches `batch_size / process_count` clips and prefetches,
with tf.data. The iterators then turn each host batch into one global `jax.Array` per key,
sharded over a 1-D 'data' mesh, and `finalize` scales the frames to [0, 1] and one-hot encodes
the frame-0 label map on the devices (the host moves uint8 frames and ids: the float arrays
would be 4x and 20x larger, which matters on a 2-core host).

Determinism and resuming: the training stream is a function of (seed, step). For TFDS datasets
epoch e is the process's split shuffled with a seed derived from (seed, e), and the flip of a
clip comes from a stateless RNG keyed on (seed, its index unique over processes); so
``create_train_iterator(config, seed, start_step=s)`` yields exactly the batches that a fresh
iterator yields from step s on (the part of the epoch before s is read but not decoded).
The synthetic stream renders global clip k from seed (seed, 0, k) and keys its flip on k, so
its global batches are the same whatever the number of processes; it needs no preparation.

Batches (B = global batch size, T = num_frames, (H, W) = image_size, C = channels):
  video        float32 (B, T, H, W, C) in [0, 1]; C as stored (3, or 1 for KTH) unless
               config.channels converts
  labels       int32 (B, H, W) frame-0 train ids 0..19 (zeros without label maps)
  label_onehot float32 (B, H, W, 20) one-hot of `labels`; absent for datasets without label
               maps (KTH, UCF-101, plain videos), which train the image-only model
  label_bg     float32 (B, H, W, 11) channels 0..10 (road..sky)   (two_path, with labels)
  label_fg     float32 (B, H, W, 9) channels 11..19 (person..)    (two_path, with labels)
  flow         float32 (B, T-1, H, W, 2) frame 0 -> t flow, normalised units (synthetic)
  valid        bool (B, T-1, H, W) where that flow is meaningful   (synthetic)
  mask         bool (B,) false on padding clips                  (evaluation only)

Config fields read (an ml_collections.ConfigDict; fields marked * are optional):
  dataset           'synthetic' (rendered on the fly, no preparation), a short name whose
                    builder config follows image_size and num_frames: 'synthetic_tfds',
                    'cityscapes', 'kth', 'ucf101', 'video_folder'; or a full TFDS name such as
                    'seg2vid_cityscapes/gtfine_128x256_t5'
  data_dir*         TFDS data_dir (default: TFDS's own, ~/tensorflow_datasets)
  manual_dir*       downloaded files, for a builder that must be prepared first
  image_size        (H, W) of the batches; stored clips are resized if they differ
  num_frames        T; clips stored longer are cut, shorter ones are an error
  batch_size        global batch size (a multiple of the number of devices)
  two_path*         also emit label_bg / label_fg (default False)
  flip*             random horizontal flips in training (default True)
  shuffle_buffer*   training shuffle buffer, in clips (default 1024)
  skip_bad_examples* drop (and log) bad clips instead of stopping: passed to the builder when it
                    is prepared, and in the pipeline for out-of-range label ids and records that
                    fail to decode (default False)
  train_split*      default 'train'
  eval_split*       default 'validation'
  num_eval_clips*   evaluate the first N clips only (None: the whole split); the size of the
                    synthetic evaluation set (None: 64)
  channels*         None (as stored), 1 or 3 (converts grayscale <-> RGB)
  label_source*     'cityscapes' only: 'gtfine' (default) or 'ssmask'
  actions*          'kth' only: the KTH actions (default: all six)
  ucf_split*        'ucf101' only: official train/test split 1, 2 or 3 (default 1)
  classes*          'ucf101' only: UCF-101 class folders (default (): all)
  with_labels*      'video_folder' only: clips come with label.png (default False)
"""

import functools
import math
import threading

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from seg2vid_jax.data import common
from seg2vid_jax.data import synthetic

tf.config.set_visible_devices([], 'GPU')

NUM_CLASSES = common.NUM_CLASSES
SYNTHETIC = 'synthetic'
_TRAIN_NAMESPACE, _EVAL_NAMESPACE = 0, 1  # Synthetic seeds: (seed, namespace, index).
_MAX_EPOCHS = 2**40


def data_sharding(devices=None):
  """Batch sharding over a 1-D 'data' mesh of `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else devices
  return NamedSharding(Mesh(np.asarray(devices), ('data',)), P('data'))


def local_batch_size(config, sharding=None):
  """Clips per process, checking that the global batch splits over processes and devices."""
  num_devices = (sharding or data_sharding()).mesh.size
  if config.batch_size % num_devices or config.batch_size % jax.process_count():
    raise ValueError(f'batch_size={config.batch_size} must be a multiple of the number of '
                     f'devices ({num_devices}) and of processes ({jax.process_count()})')
  return config.batch_size // jax.process_count()


def _field(config, name, default):
  return config.get(name, default) if hasattr(config, 'get') else getattr(config, name, default)


# ----------------------------------------------------------------------------------------------
# Per-clip processing (TensorFlow graph functions on one example).


def _resize(x, size, method):
  """Resizes (..., h, w, c) to `size` unless it already has it."""
  if tuple(x.shape[-3:-1]) == tuple(size):
    return x
  return tf.image.resize(x, size, method=method, antialias=(method == 'bilinear'))


def _flip(example):
  """Horizontal flip that keeps labels and flow consistent: flow x changes sign."""
  out = dict(example)
  out['video'] = tf.reverse(example['video'], axis=[-2])
  if 'label' in example:
    out['label'] = tf.reverse(example['label'], axis=[-1])
  if 'flow' in example:
    flow = example['flow']
    out['flow'] = tf.reverse(flow, axis=[-2]) * tf.constant([-1.0, 1.0], flow.dtype)
    out['valid'] = tf.reverse(example['valid'], axis=[-1])
  return out


def _make_preprocess(config, *, train, seed):
  """Returns fn(index, example) -> host batch element (compact: see `finalize`).

  example: video uint8 (T', h, w, C), optional label uint8 (h, w), flow float16/32
  (T'-1, h, w, 2), valid bool (T'-1, h, w). The element: video uint8 (T, H, W, 3), labels uint8
  (H, W), flow (T-1, H, W, 2) in the stored float type, valid bool (T-1, H, W).
  """
  size = tuple(config.image_size)
  t = config.num_frames
  flip = train and _field(config, 'flip', True)
  channels = _field(config, 'channels', None)
  if channels not in (None, 1, 3):
    raise ValueError(f'channels={channels}; expected None (as stored), 1 or 3')

  def preprocess(index, example):
    video = example['video'][:t]
    if channels == 3 and video.shape[-1] == 1:
      video = tf.image.grayscale_to_rgb(video)
    elif channels == 1 and video.shape[-1] == 3:
      video = tf.image.rgb_to_grayscale(video)
    if tuple(video.shape[-3:-1]) != size:
      video = tf.cast(tf.round(tf.clip_by_value(
          _resize(tf.cast(video, tf.float32), size, 'bilinear'), 0.0, 255.0)), tf.uint8)
    out = {'video': video}
    if 'label' in example:
      out['label'] = _resize(example['label'][..., None], size, 'nearest')[..., 0]
    if 'flow' in example:
      # Normalised flow is resolution independent: resizing the field keeps its values.
      flow = example['flow'][:t - 1]
      out['flow'] = tf.cast(_resize(flow, size, 'bilinear'), flow.dtype)
      valid = tf.cast(example['valid'][:t - 1, ..., None], tf.uint8)
      out['valid'] = tf.cast(_resize(valid, size, 'nearest')[..., 0], tf.bool)
    if flip:
      # `index` is unique over all processes (see the sources), so that the flips of a clip
      # do not depend on the number of processes.
      key = tf.random.experimental.stateless_fold_in(
          tf.constant([seed, 0], tf.int64), tf.cast(index, tf.int64))
      out = tf.cond(tf.random.stateless_uniform([], key) < 0.5, lambda: _flip(out), lambda: out)
    if 'label' in out:
      out['labels'] = tf.cast(out.pop('label'), tf.uint8)
    return out

  return preprocess


class _SkipCounter:
  """Counts clips the pipeline dropped, for the log (tf.data runs it from its threads)."""

  def __init__(self, what):
    self.what = what
    self.count = 0
    self._lock = threading.Lock()

  def __call__(self, clip_id, max_id):
    with self._lock:
      self.count += 1
      count = self.count
    logging.warning('%s: skipped clip %s: label id %d is outside 0..%d (%d skipped so far)',
                    self.what, clip_id.numpy().decode(), int(max_id), NUM_CLASSES - 1, count)
    return True


def check_labels(ds, what, skip):
  """Stops on (or, with `skip`, drops and logs) clips whose label ids are not in 0..19.

  `ds` elements hold 'label' (uint8 ids) and 'clip_id' (string); `what` names the dataset.
  """
  if skip:
    counter = _SkipCounter(what)

    def keep(example):
      max_id = tf.reduce_max(tf.cast(example['label'], tf.int32))
      ok = max_id < NUM_CLASSES
      logged = tf.cond(ok, lambda: True, lambda: tf.py_function(
          counter, [example['clip_id'], max_id], tf.bool))
      return tf.logical_and(ok, logged)

    return ds.filter(keep)

  def assert_ok(example):
    max_id = tf.reduce_max(tf.cast(example['label'], tf.int32))
    with tf.control_dependencies([tf.debugging.Assert(
        max_id < NUM_CLASSES,
        [f'{what}: label id outside 0..{NUM_CLASSES - 1} in clip', example['clip_id'], 'max id',
         max_id])]):
      return dict(example, label=tf.identity(example['label']))

  return ds.map(assert_ok)


# ----------------------------------------------------------------------------------------------
# Sources.


def _synthetic_example(config, namespace, seed, index):
  """One make_clip clip as a graph op: seed (seed, namespace, index)."""
  h, w = config.image_size
  t = config.num_frames

  def render(i):
    clip = synthetic.make_clip((seed, namespace, int(i)), h, w, t)
    return clip['video'], clip['labels'][0].astype(np.uint8), clip['flow'], clip['valid']

  video, label, flow, valid = tf.numpy_function(
      render, [index], (tf.uint8, tf.uint8, tf.float32, tf.bool), stateful=False)
  video.set_shape((t, h, w, 3))
  label.set_shape((h, w))
  flow.set_shape((t - 1, h, w, 2))
  valid.set_shape((t - 1, h, w))
  return {'video': video, 'label': label, 'flow': flow, 'valid': valid}


def _alias_builder(config, **kwargs):
  """Builds the builder of a short dataset name, with a builder config made from the config.

  The stored clips then have the batch size and length already: 'cityscapes' (label_source
  'gtfine' or 'ssmask'), 'kth' (actions), 'ucf101' (ucf_split, classes), 'video_folder'
  (with_labels), 'synthetic_tfds'.
  A predefined builder config of the same name is used as it is.
  """
  # pylint: disable=g-import-not-at-top
  from seg2vid_jax.data import cityscapes, kth, synthetic_tfds, ucf101, video_folder
  h, w = config.image_size
  size = dict(height=h, width=w, num_frames=config.num_frames)
  suffix = f'{h}x{w}_t{config.num_frames}'
  if config.dataset == 'synthetic_tfds':
    cls, builder_config = synthetic_tfds.SyntheticVideo, synthetic_tfds.SyntheticConfig(
        name=suffix, **size)
  elif config.dataset == 'cityscapes':
    source = _field(config, 'label_source', 'gtfine')
    cls, builder_config = cityscapes.Cityscapes, cityscapes.CityscapesConfig(
        name=f'{source}_{suffix}', labels=source, **size)
  elif config.dataset == 'kth':
    actions = tuple(_field(config, 'actions', None) or kth.ACTIONS)
    cls, builder_config = kth.Kth, kth.KthConfig(
        name=f'{"-".join(actions)}_{suffix}', actions=actions, **size)
  elif config.dataset == 'ucf101':
    split_number = int(_field(config, 'ucf_split', None) or 1)
    classes = tuple(_field(config, 'classes', None) or ())
    cls, builder_config = ucf101.Ucf101, ucf101.Ucf101Config(
        name=f'split{split_number}_{"-".join(classes) + "_" if classes else ""}{suffix}',
        split_number=split_number, classes=classes, **size)
  elif config.dataset == 'video_folder':
    with_labels = bool(_field(config, 'with_labels', False))
    cls, builder_config = video_folder.VideoFolder, video_folder.VideoFolderConfig(
        name=f'{"labels_" if with_labels else ""}{suffix}', with_labels=with_labels, **size)
  else:
    raise ValueError(f'dataset={config.dataset!r}: expected {SYNTHETIC!r}, one of '
                     f'{sorted(ALIASES)} or a TFDS name such as '
                     "'seg2vid_cityscapes/gtfine_128x256_t5'")
  builder_config = cls.builder_configs.get(builder_config.name, builder_config)
  return cls(config=builder_config, data_dir=_field(config, 'data_dir', None), **kwargs)


ALIASES = ('synthetic_tfds', 'cityscapes', 'kth', 'ucf101', 'video_folder')


def get_builder(config):
  """The TFDS builder of config.dataset, prepared first if it is not yet.

  config.dataset is a short name (ALIASES; the builder config follows image_size and
  num_frames) or a TFDS name such as 'seg2vid_cityscapes/gtfine_128x256_t5' (a dataset
  prepared with a custom builder config is found from its files in data_dir).
  """
  from seg2vid_jax.data import register_builders  # pylint: disable=g-import-not-at-top
  register_builders()
  data_dir = _field(config, 'data_dir', None)
  skip = dict(skip_bad_examples=_field(config, 'skip_bad_examples', False))
  if config.dataset in ALIASES or '/' not in config.dataset and not config.dataset.startswith(
      'seg2vid_'):
    builder = _alias_builder(config, **skip)
  else:
    builder = tfds.builder(config.dataset, data_dir=data_dir)
    if not builder.is_prepared() and config.dataset.startswith('seg2vid_'):
      builder = tfds.builder(config.dataset, data_dir=data_dir, **skip)
  if not builder.is_prepared():
    logging.info('Preparing %s in %s', config.dataset, builder.data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=_field(config, 'manual_dir', None)))
  return builder


def _check_builder(builder, config):
  """Checks that the stored clips can give what the config asks for."""
  stored_t = builder.info.features['video'].shape[0]
  if stored_t < config.num_frames:
    raise ValueError(f'{config.dataset}: clips are {stored_t} frames long, shorter than '
                     f'num_frames={config.num_frames}; prepare a config with longer clips')


def _decoders(builder):
  """Skips TFDS's decoding so that skipped or shuffled clips are never decoded."""
  features = builder.info.features
  return {k: tfds.decode.SkipDecoding() for k in ('video', 'label', 'labels', 'flow', 'valid')
          if k in features}


def _make_decode(builder, config):
  """fn(example) -> decoded dict of the features the pipeline uses (first T frames only)."""
  features = builder.info.features
  t = config.num_frames

  def decode(example):
    if isinstance(features['video'], tfds.features.Video):  # Encoded frames: decode T only.
      video = features['video'].decode_example(example['video'][:t])
    else:
      video = features['video'].decode_example(example['video'])[:t]
    out = {'video': video, 'clip_id': example.get('clip_id', tf.constant(''))}
    if 'label' in features:
      out['label'] = features['label'].decode_example(example['label'])[..., 0]
    if 'flow' in features:
      out['flow'] = features['flow'].decode_example(example['flow'])  # float16 stays on host.
      out['valid'] = features['valid'].decode_example(example['valid'])
    return out

  return decode


def _num_examples(builder, split, config, process_split=None):
  """Examples in `process_split` (default: all of `split`), with clear errors if there are none.

  `split` is the split string of the config (e.g. 'train' or 'validation[:50%]');
  `process_split` this process's part of it.
  """
  if split.split('[')[0] not in builder.info.splits:
    raise ValueError(f'{config.dataset}: no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}')
  n = builder.info.splits[process_split or split].num_examples
  if n == 0:
    raise ValueError(f'{config.dataset}: split {split!r} is empty for process '
                     f'{jax.process_index()} of {jax.process_count()}')
  return n


def _epoch_seed(seed, epoch):
  """Shuffle seed of one epoch; tf.data takes a tensor seed inside flat_map."""
  return tf.cast(epoch, tf.int64) * 1_000_003 + seed


def make_train_dataset(config, seed, start_step=0, sharding=None):
  """The process-local training tf.data.Dataset of host batches, from `start_step` on.

  Host batches are compact (video uint8, labels uint8); `finalize` makes model batches.
  """
  batch = local_batch_size(config, sharding)
  start = start_step * batch  # Index of the first clip of this process's stream.
  preprocess = _make_preprocess(config, train=True, seed=seed)
  skip = _field(config, 'skip_bad_examples', False)
  if config.dataset == SYNTHETIC:
    process, global_batch = jax.process_index(), config.batch_size

    def example(i):
      k = (i // batch) * global_batch + process * batch + i % batch  # Global clip index.
      # Keyed by the global index k, so augmentation is the same whatever the process count.
      return k, _synthetic_example(config, _TRAIN_NAMESPACE, seed, k)

    ds = tf.data.Dataset.range(start, 2**62).map(example, tf.data.AUTOTUNE, deterministic=True)
  else:
    builder = get_builder(config)
    _check_builder(builder, config)
    split = _field(config, 'train_split', 'train')
    process_split = tfds.split_for_jax_process(split, drop_remainder=True)
    num = _num_examples(builder, split, config, process_split)
    base = builder.as_dataset(split=process_split, shuffle_files=False, decoders=_decoders(builder))
    buffer = min(_field(config, 'shuffle_buffer', 1024), num)
    epoch, offset = divmod(start, num)
    ds = tf.data.Dataset.range(epoch, _MAX_EPOCHS).flat_map(
        lambda e: base.shuffle(buffer, seed=_epoch_seed(seed, e)))
    ds = ds.skip(offset).map(_make_decode(builder, config), tf.data.AUTOTUNE, deterministic=True)
    if 'label' in builder.info.features:
      ds = check_labels(ds, config.dataset, skip)
    if skip:
      ds = ds.ignore_errors(log_warning=True)
    ds = ds.enumerate(start).map(
        lambda i, x: (i * jax.process_count() + jax.process_index(), x))
  ds = ds.map(preprocess, tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return _with_options(ds)


def make_eval_dataset(config, split=None, sharding=None, seed=0):
  """Process-local evaluation batches: every clip of the split once, padded, with a mask.

  Every process yields the same number of batches (padding clips have mask False).
  Returns (dataset, num_batches).
  """
  batch = local_batch_size(config, sharding)
  preprocess = _make_preprocess(config, train=False, seed=seed)
  process, count = jax.process_index(), jax.process_count()
  if config.dataset == SYNTHETIC:
    total = _field(config, 'num_eval_clips', None) or 64
    per_process = math.ceil(total / count)
    first, last = process * per_process, min((process + 1) * per_process, total)
    num_batches = math.ceil(per_process / batch)
    ds = tf.data.Dataset.range(first, max(first, last)).map(
        lambda i: (i, _synthetic_example(config, _EVAL_NAMESPACE, seed, i)),
        tf.data.AUTOTUNE, deterministic=True)
  else:
    builder = get_builder(config)
    _check_builder(builder, config)
    split = split or _field(config, 'eval_split', 'validation')
    total = _num_examples(builder, split, config)
    limit = _field(config, 'num_eval_clips', None)
    if limit and int(limit) < total and '[' not in split:  # The first N clips only.
      split = f'{split}[:{int(limit)}]'
    counts = [builder.info.splits[tfds.split_for_jax_process(
        split, process_index=i, process_count=count)].num_examples for i in range(count)]
    num_batches = math.ceil(max(counts) / batch)
    ds = builder.as_dataset(split=tfds.split_for_jax_process(split), shuffle_files=False,
                            decoders=_decoders(builder))
    ds = ds.map(_make_decode(builder, config), tf.data.AUTOTUNE, deterministic=True)
    if 'label' in builder.info.features:
      ds = check_labels(ds, config.dataset, _field(config, 'skip_bad_examples', False))
    ds = ds.enumerate()
  ds = ds.map(preprocess, tf.data.AUTOTUNE, deterministic=True)
  ds = ds.map(lambda x: dict(x, mask=tf.constant(True)))
  padding = tf.data.Dataset.from_tensors(
      tf.nest.map_structure(lambda s: tf.zeros(s.shape, s.dtype), ds.element_spec)).repeat()
  ds = ds.concatenate(padding).take(num_batches * batch)
  ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
  return _with_options(ds), num_batches


def _with_options(ds):
  options = tf.data.Options()
  options.deterministic = True
  return ds.with_options(options)


# ----------------------------------------------------------------------------------------------
# Iterators of global jax.Arrays.


def to_global(batch, sharding):
  """Turns each process's numpy batch into global jax.Arrays sharded along the batch."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


@functools.partial(jax.jit, static_argnames='two_path')
def finalize(batch, two_path=False):
  """Host batch -> model batch, on the devices: float frames, one-hot label maps.

  The host sends uint8 frames and ids (a quarter and a twentieth of the bytes of the float
  arrays); scaling and one-hot encoding run where the batch already is, sharded like it.
  Both are written on flattened arrays: XLA:CPU vectorises poorly along a minor axis of 3,
  and a row gather from the identity is its fastest one-hot (several times faster, measured).
  """
  out = dict(batch)
  if 'flow' in batch:
    out['flow'] = batch['flow'].astype(jnp.float32)  # Stored datasets keep float16 on the host.
  video = batch['video']
  flat = video.reshape(video.shape[0], -1).astype(jnp.float32) * (1.0 / 255.0)  # 255 -> 1.0
  out['video'] = flat.reshape(video.shape)
  if 'labels' in batch:
    labels = batch['labels'].astype(jnp.int32)
    out['labels'] = labels
    eye = jnp.eye(NUM_CLASSES, dtype=jnp.float32)
    onehot = jnp.take(eye, labels.reshape(labels.shape[0], -1), axis=0, mode='clip')
    out['label_onehot'] = onehot.reshape(labels.shape + (NUM_CLASSES,))
    if two_path:
      out['label_bg'] = out['label_onehot'][..., :len(common.BACKGROUND_IDS)]
      out['label_fg'] = out['label_onehot'][..., len(common.BACKGROUND_IDS):]
  else:  # No label maps (KTH, UCF-101, plain videos): for the image-only model.
    out['labels'] = jnp.zeros(video.shape[:1] + video.shape[2:4], jnp.int32)
  return out


def _iterate(ds, sharding, two_path):
  for batch in ds.as_numpy_iterator():
    yield finalize(to_global(batch, sharding), two_path=two_path)


def create_train_iterator(config, seed, sharding=None, start_step=0):
  """Endless iterator of global training batches; `start_step` resumes an interrupted run."""
  sharding = sharding or data_sharding()
  return _iterate(make_train_dataset(config, seed, start_step, sharding), sharding,
                  _field(config, 'two_path', False))


def create_eval_iterator(config, split=None, sharding=None, seed=0):
  """Iterator over every evaluation clip once (batches padded, see `mask`)."""
  sharding = sharding or data_sharding()
  ds, _ = make_eval_dataset(config, split, sharding, seed)
  return _iterate(ds, sharding, _field(config, 'two_path', False))
