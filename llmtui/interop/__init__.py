"""Pretrained models in: a local Hugging Face model folder or a keras-hub preset becomes an llmtui run folder.

`import_base(source, run_root)` writes a run folder (recipe, tokenizer, model/final.keras, manifest) that
eval, generate, chat, finetune and export treat like any run; `[finetune] base` accepts such sources directly.
"""

from llmtui.interop.base import BaseImportError, BaseSpec, import_base, is_pretrained_source, read_base_spec

__all__ = ["BaseSpec", "BaseImportError", "import_base", "is_pretrained_source", "read_base_spec"]
