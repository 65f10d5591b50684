"""seg2vid on UCF-101: the image-only model (no label maps), 128x128 RGB, official split 1.

  python -m seg2vid_jax.main --config=configs/ucf101.py --workdir=$WORKDIR \
      --config.manual_dir=/data/ucf101

manual_dir holds UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.avi and ucfTrainTestlist/ (docs/DATA.md);
the first run prepares seg2vid_ucf101/split1_128x128_t5 there (`python -m
seg2vid_jax.data.prepare --dataset=seg2vid_ucf101/split1_128x128_t5 --manual_dir=/data/ucf101`
does it beforehand). A class subset: --config.classes="('ApplyEyeMakeup', 'Archery')".
"""

from configs import default


def get_config():
  """UCF-101: 128x128 RGB, no label maps: the image-only model, as configs/kth.py."""
  config = default.get_config()
  config.dataset = 'ucf101'  # TFDS builder seg2vid_ucf101 over the distributed .avi videos.
  config.ucf_split = 1  # Official train/test split (1, 2 or 3; trainlist0N.txt / testlist0N.txt).
  config.classes = ()  # UCF-101 class folders to use, e.g. ('ApplyEyeMakeup',); (): all 101.
  config.image_size = (128, 128)  # The 320x240 frames are resized (no crop).
  config.num_frames = 5  # T: the first frame and K = 4 predicted frames, as default.py.
  config.two_path = False  # No label maps to split into background and foreground.
  config.flip = True  # Horizontal flips are harmless for UCF-101 actions.
  config.batch_size = 16  # As configs/kth.py.
  config.model.channels = 3  # RGB.
  config.model.num_classes = 0  # No label map anywhere: the image-only model ...
  config.model.upconv_upsampling = 'nearest'  # ... whose decoder upsamples by nearest neighbour.
  config.eval_split = 'test'  # UCF-101 has train and test splits.
  return config
