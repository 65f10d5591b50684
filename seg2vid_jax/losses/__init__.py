"""The objectives, one module per task: `img2vid` (stage 2, the nine published terms and the
optional extra terms) and `img2img` (stage 1, pix2pixHD's GAN losses). Pure functions."""
