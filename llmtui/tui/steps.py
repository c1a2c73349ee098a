"""The wizard's steps, in order: (screen name, label in the step bar)."""

STEPS: tuple[tuple[str, str], ...] = (
    ("data", "Data"),
    ("vocabulary", "Vocabulary"),
    ("model", "Model"),
    ("training", "Training"),
    ("tuning", "Tuning"),
    ("review", "Review"),
    ("train", "Train"),
    ("evaluate", "Evaluate"),
    ("playground", "Playground"),
)
STEP_NAMES = tuple(name for name, _ in STEPS)
