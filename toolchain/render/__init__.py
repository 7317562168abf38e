"""The fused portrait stage: mask upsample -> depth CoC -> bokeh blur -> composite.

- api.py: `render(...)`, the one library call (CLI `portrait render` wraps it)
- plan.py: input rules and the plan (sizes, radii, tables) shared by both implementations
- model_output.py: a model's low-res output -> subject probability, by its output spec
- golden.py: float32 reference; device.py: fixed-point port of the same steps
- baseline.py: the notebook's pipeline, for comparison only
- quality.py: figures against synthetic ground truth, photo panels; stage_timing.py: timings
"""

from .api import RenderResult, render

__all__ = ["RenderResult", "render"]
