"""Data for SR searches: the Real-ESRGAN degradation, image folders, and the built-in photographs."""
from pruneseek.data.builtin import HELD_OUT, TRAIN, builtin_images, builtin_path
from pruneseek.data.degrade import DegradationConfig, degrade
from pruneseek.data.images import DataError, SRPairs, bicubic_upscale, list_images, load_image

__all__ = [
    "HELD_OUT", "TRAIN", "DataError", "DegradationConfig", "SRPairs", "bicubic_upscale", "builtin_images",
    "builtin_path", "degrade", "list_images", "load_image",
]
