"""Test set-up shared by every test: CPU only, TensorFlow kept off any GPU, and a persistent
XLA compilation cache so that the many runs of the same tiny model compile once."""

import os
import pathlib

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      str(pathlib.Path.home() / '.cache' / 'seg2vid_jax' / 'jax'))
