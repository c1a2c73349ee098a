"""Import this module before loading a `.keras` export: it registers llmtui's own layers with Keras.

    import keras
    import llmtui.export.custom_objects  # noqa: F401
    model = keras.saving.load_model("model.keras", safe_mode=True)

The exported models hold no Lambda layers or Python lambdas, so `safe_mode=True` loads them; Keras only
needs to find the classes by their registered names (`llmtui>DecoderBlock`, `llmtui>LSTM`, `llmtui>TokenEncoding`, ...).
"""

import llmtui.finetune.classifier  # noqa: F401  (registers SequencePooling, for classification runs)
import llmtui.models.recurrent_layers  # noqa: F401  (registers LSTM, GRU, SimpleRNN)
import llmtui.models.token_encoding  # noqa: F401  (registers TokenEncoding)
import llmtui.models.transformer  # noqa: F401  (registers DecoderBlock)
