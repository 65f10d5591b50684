"""Array operations that seg2vid needs and that no library provides as we need them."""

from seg2vid_jax.ops.warp import flow_to_pixels, pixels_to_flow, warp

__all__ = ['warp', 'flow_to_pixels', 'pixels_to_flow']
