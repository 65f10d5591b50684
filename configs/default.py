"""The published seg2vid training setup (two-path model, Cityscapes 128x256, clips of 5).

Other configs start from this one and change what differs. Run:

  python -m seg2vid_jax.main --config=configs/cityscapes.py --workdir=/path/to/workdir
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config():
  """Published hyperparameters (MODEL.md): Adam 1e-3, batch 8, K = 4, 128x256."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # Seeds parameter init, latent/noise draws (per step) and data order.
  config.task = 'img2vid'  # 'img2vid' (stage 2, this file) or 'img2img' (stage 1, pix2pixHD).

  # Data (seg2vid_jax.input_pipeline).
  config.dataset = 'cityscapes'  # 'synthetic', 'synthetic_tfds', 'cityscapes', 'kth', 'ucf101', 'video_folder'.
  config.data_dir = placeholder(str)  # TFDS data_dir for prepared datasets (None: TFDS default).
  config.manual_dir = placeholder(str)  # Extracted raw files for builders that need a manual download.
  config.image_size = (128, 256)  # (H, W) the clips are resized to; multiples of 16.
  config.num_frames = 5  # T: the first frame and K = T - 1 predicted frames.
  config.batch_size = 8  # Global batch, split over all devices of all hosts.
  config.two_path = True  # Separate background/foreground motion encoders (IJCV model).
  config.flip = True  # Random horizontal flips (label map flipped, flow x negated).
  config.shuffle_buffer = 256  # Clips in the shuffle buffer of the training stream.
  config.train_split = 'train'  # TFDS split for training.
  config.eval_split = 'validation'  # TFDS split for evaluation.
  config.num_eval_clips = placeholder(int)  # Evaluate the first N clips only (None: all; 0: no evaluation).
  config.skip_bad_examples = False  # Skip (and count) unreadable clips instead of stopping.

  # Model (seg2vid_jax.models.Img2Vid); image size, K and two_path come from above.
  config.model = ml_collections.ConfigDict()
  config.model.num_classes = 20  # Label channels: Cityscapes ids 0..18 and 19; 0: image-only model.
  config.model.channels = 3  # Image channels (1 for grayscale KTH).
  config.model.num_bg_classes = 11  # Two-path: ids below this are background (road ... sky).
  # Two-path (background, foreground) latent widths; None: z_dim / 2 each, as the training script.
  config.model.latent_split = placeholder(tuple)
  config.model.upconv_upsampling = 'bilinear'  # Flow decoder/heads x2: 'nearest' in the image-only model.
  config.model.logvar_bias_init = 0.0  # Initial fc2 (logvar) bias; < 0 starts z ~ mu (not published).
  config.model.flow_in_pixels = False  # Flow heads output pixels, not normalised units (not published).
  config.model.refine_residual = False  # Refinement corrects the warped frame (not published).
  config.model.encoder_widths = (32, 64, 128, 256)  # Image encoder; the flow decoder mirrors it.
  config.model.motion_widths = (32, 64, 64, 128, 128)  # Motion encoder convolutions.
  config.model.latent_channels = 64  # Channels of the (H/16, W/16) latent map.
  config.model.z_dim = 1024  # Width of a latent row (fc, fc1, fc2).
  config.model.code_channels = 16  # Motion code channels per predicted frame (zconv).
  config.model.head_width = 16  # Width of the flow and mask heads.
  config.model.refine_widths = (64, 128, 256, 512, 512)  # Refinement U-Net levels.
  config.model.refine_depths = (2, 2, 3, 3, 3)  # vgg_layers per refinement level.
  config.model.refine_bottleneck = 1024  # Channels of the refinement bottleneck.
  # Rematerialise the refinement U-Net level by level (memory for time; XLA:CPU merges the
  # recomputation back and saves nothing: docs/PERF.md).
  config.model.remat_refine = False
  config.model.dtype = 'float32'  # Compute dtype: 'bfloat16' on accelerators (params fp32).

  # Objective (seg2vid_jax.losses.img2vid); None: the published weights.
  config.loss_weights = None  # e.g. {'vgg': 0.0}; keys of its WEIGHTS and EXTRA_WEIGHTS.
  config.vgg_weights = placeholder(str)  # .npz from `python -m seg2vid_jax.vgg_weights`; None: no VGG term.
  config.kl_free_nats = 0.0  # Free nats per clip of the KL term (0: published; losses.kld_loss).
  config.kl_warmup_steps = 0  # KL weight ramped from 0 over these steps (0: published, constant).
  config.train_posterior_mean = False  # Train with z = mu (a deterministic probe; False: published).

  # Optimisation.
  config.learning_rate = 1e-3  # Adam, as published.
  config.lr_schedule = 'constant'  # 'constant' (published), 'cosine' (with warmup) or 'piecewise'.
  config.warmup_steps = 0  # Linear warmup steps (cosine schedule only).
  config.lr_decay_boundaries = ()  # Steps at which the rate is multiplied (piecewise only).
  config.lr_decay_factor = 0.1  # The multiplier at each boundary (piecewise only).
  config.b1 = 0.9  # Adam beta1.
  config.b2 = 0.999  # Adam beta2.
  config.grad_clip_norm = placeholder(float)  # Global-norm gradient clipping (None: off, as published).
  config.num_train_steps = 200_000  # Training length in steps.

  # Bookkeeping.
  config.log_every_steps = 100  # Scalars to TensorBoard and the console.
  config.checkpoint_every_steps = 2_000  # Checkpoint interval (also at the end and on SIGTERM).
  config.keep_checkpoints = 3  # Checkpoints kept (the newest).
  config.sample_every_steps = 5_000  # GIF sample sheets to <workdir>/samples and TensorBoard.
  config.num_sample_clips = 4  # Clips on a sample sheet.
  config.eval_every_steps = 20_000  # Periodic evaluation during training (0: only at the end).
  config.num_prior_samples = 5  # N of the best-of-N prior evaluation.
  # True: the authors' test protocol, prior sample i uses one z for every clip of the set;
  # False: a z per clip and sample.
  config.eval_shared_prior_z = False
  config.progress_bar = True  # tqdm bar on interactive consoles.

  # Generation from a label map alone (--mode=generate without --first_frame): stage 1.
  config.img2img_workdir = placeholder(str)  # Workdir of a stage-1 run (configs/*_img2img.py).
  config.img2img_config = placeholder(str)  # The config file that stage-1 run used.
  return config
