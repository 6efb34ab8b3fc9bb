"""A class-conditional GAN for synthetic minority faces (``clearface gan``, ``imbalance: gan_oversample``)."""
