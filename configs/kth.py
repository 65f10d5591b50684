"""seg2vid on KTH human actions: 128x128 grayscale, no label maps (one constant channel).

  python -m seg2vid_jax.main --config=configs/kth.py --workdir=$WORKDIR \
      --config.manual_dir=/data/kth_frames
"""

from configs import default


def get_config():
  """KTH: 128x128, grayscale, a single 'label' class, no flips of people walking left/right."""
  config = default.get_config()
  config.dataset = 'kth'  # TFDS builder over the authors' frame layout.
  config.actions = ('walking', 'jogging', 'handwaving')  # KTH actions used, as the authors.
  config.image_size = (128, 128)  # KTH frames.
  config.two_path = False  # No semantics to split.
  config.flip = True  # Horizontal flips are harmless for KTH.
  config.batch_size = 16  # As published for the 20-channel model.
  config.model.channels = 1  # Grayscale.
  config.eval_split = 'test'  # KTH has train and test persons.
  return config
