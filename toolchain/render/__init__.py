"""The fused portrait stage: mask upsample -> depth CoC -> bokeh blur -> composite.

- api.py: `render(...)`, the one library call (CLI `portrait render` wraps it)
- plan.py: input rules and the plan (sizes, radii, tables) shared by both implementations
- model_output.py: a model's low-res output -> subject probability, by its output spec
- golden.py: float32 reference; device.py: fixed-point port of the same steps
- trimap.py: the trimap rules (mask, opaque interior, depth regions, enclosed holes); depth_edges.py:
  what depth says on the working grid; matting.py: the band solve and foreground colours
- photo.py: one photo with a bundle (`portrait render`); baseline.py: the notebook's pipeline, for
  comparison only; stage_timing.py: timings
Measurement drivers (quality figures, the demo gallery, depth agreement) live in experiments/.
"""

from .api import RenderResult, render

__all__ = ["RenderResult", "render"]
