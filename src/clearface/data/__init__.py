"""Data: zip/folder ingest with a uint8 cache, seeded splits, batched augmentation."""

from .ingest import ImageSet, list_images, load_images, load_labelled, read_labels, write_text_atomic

__all__ = ["ImageSet", "list_images", "load_images", "load_labelled", "read_labels", "write_text_atomic"]
