"""Import this module before loading a `.keras` export: it registers llmtui's own layers with Keras.

    import keras
    import llmtui.export.custom_objects  # noqa: F401
    model = keras.saving.load_model("model.keras", safe_mode=True)

The exported models hold no Lambda layers or Python lambdas, so `safe_mode=True` loads them; Keras only
needs to find the classes by their registered names (`llmtui>DecoderBlock`, `llmtui>LSTM`, `llmtui>TokenEncoding`, ...).
The list of those classes' modules is kept in one place, `llmtui.runfolder.register_custom_objects`.
"""

from llmtui.runfolder import register_custom_objects

register_custom_objects()
