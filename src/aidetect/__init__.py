"""ai-image-detector: small CNNs that tell AI-generated images from real ones.

Label convention, everywhere in this package: FAKE (AI-generated) = 1, REAL = 0.
"""

FAKE = 1
REAL = 0
LABELS = {"REAL": REAL, "FAKE": FAKE}

__version__ = "0.1.0"
