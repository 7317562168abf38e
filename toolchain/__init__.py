"""Mobile-export toolchain for smartphone portrait mode.

Model flow: source file -> float reference -> quantized variants -> parity verdict -> bundle.
Frame flow: RGB + DEPTH16 -> registered depth -> mask -> guided upsample -> depth-aware blur -> composite.
"""

__version__ = "0.1.0"
