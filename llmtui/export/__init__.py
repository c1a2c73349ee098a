"""Export a trained run's model: a `.keras` file (loads with `safe_mode=True`), a keras-hub preset folder
(gpt → `GPT2Backbone`, llama → `LlamaBackbone`) and a TensorFlow SavedModel for serving.

Every export is loaded back right after it is written and must give the run's model's logits on sample
ids; each folder gets `llmtui_export.json` saying where it came from and how to load it.
"""

from llmtui.export.common import FORMATS, ExportError, ExportResult
from llmtui.export.exporter import export_run, plan_exports

__all__ = ["FORMATS", "ExportError", "ExportResult", "export_run", "plan_exports"]
