"""The authors' released two-path Cityscapes checkpoint: two-path model, 128/896 latent split.

Their test script builds the two-path model with a background/foreground latent split of
128/896 (their training script's default, configs/cityscapes.py, is 512/512). Import the
checkpoint, then generate or evaluate:

  python -m seg2vid_jax.released --checkpoint=refine_w_mask_two_path.pth.tar \
      --variant=two_path --config=configs/cityscapes_released.py --workdir=$WORKDIR
  python -m seg2vid_jax.main --config=configs/cityscapes_released.py --workdir=$WORKDIR \
      --mode=generate --label_map=labels.png --first_frame=frame.png
"""

from configs import default


def get_config():
  """configs/cityscapes.py with the released checkpoint's latent split."""
  config = default.get_config()
  config.model.latent_split = (128, 896)  # (background, foreground) widths of mu/logvar rows.
  return config
