"""anoseg: supervised industrial anomaly segmentation, from generated defect pairs to paper-style tables."""

__version__ = "0.1.0"
