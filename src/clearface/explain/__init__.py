"""Explanations of single decisions: Grad-CAM maps for the report and the service."""

from .gradcam import GradCAM, find_target_layer, overlay

__all__ = ["GradCAM", "find_target_layer", "overlay"]
