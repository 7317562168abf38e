"""What an app developer receives: one handoff record per model file, rendered three ways.

- metadata.py: the record (built from the manifest) and its TFLite/MediaPipe metadata view
- client.py:   the MediaPipe client environment (.venv-client), called by subprocess
- verify.py:   feed every file as the manifest says, in ai-edge-litert and MediaPipe Tasks
- clients.py:  each file's measured clients (verify + the browser device-check), claims, handoff_gpu
- card.py:     the model card (README.md) view
- pack.py:     the reproducible zip

Not for: deciding what is exported (export.py) or judging quantization (parity/).
"""
