"""Training: the LightningModule, losses, per-epoch summary and the end-to-end run."""
