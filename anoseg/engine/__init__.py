"""Training, evaluation and prediction machinery, kept apart from the networks (``anoseg.models``)."""
