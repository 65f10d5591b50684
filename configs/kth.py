"""seg2vid on KTH human actions: the authors' image-only ("genmask") model, 128x128 grayscale.

  python -m seg2vid_jax.main --config=configs/kth.py --workdir=$WORKDIR \
      --config.manual_dir=/data/kth_frames
"""

from configs import default


def get_config():
  """KTH: 128x128 grayscale, no label maps: the image-only model of the released KTH checkpoint
  (`convert.from_torch(sd, 'image_only', (128, 128))` loads it)."""
  config = default.get_config()
  config.dataset = 'kth'  # TFDS builder over the authors' frame layout.
  config.actions = ('walking', 'jogging', 'handwaving')  # KTH actions used, as the authors.
  config.image_size = (128, 128)  # KTH frames.
  config.two_path = False  # No semantics to split.
  config.flip = True  # Horizontal flips are harmless for KTH.
  config.batch_size = 16  # As published for the 20-channel model.
  config.model.channels = 1  # Grayscale (VGG sees the frame repeated to three channels).
  config.model.num_classes = 0  # No label map anywhere: the image-only model ...
  config.model.upconv_upsampling = 'nearest'  # ... whose decoder upsamples by nearest neighbour.
  config.eval_split = 'test'  # KTH has train and test persons.
  return config
