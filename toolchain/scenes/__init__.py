"""Synthetic portrait scenes whose ground truth is exact.

For measuring render quality and for feeding the ToF sensor simulator: an RGB image, a soft alpha
matte with thin structures, the subject's class and metric depth for every pixel. Not a renderer of
realistic images; the aim is known truth with the hard cases (hair, whiskers, fur, depth edges,
dark surfaces, concave corners) present.
"""

from toolchain.scenes.generate import Scene, generate_scene, rgb_intrinsics

__all__ = ["Scene", "generate_scene", "rgb_intrinsics"]
