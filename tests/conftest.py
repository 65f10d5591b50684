"""Test set-up shared by every test: CPU only, TensorFlow kept off any GPU."""

import os

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
