"""Data for SR searches: the Real-ESRGAN degradation, image folders, and the built-in photographs."""
from pruneseek.data.builtin import HELD_OUT, TRAIN, VALIDATION, builtin_images, builtin_path
from pruneseek.data.degrade import PRESETS, DegradationConfig, degrade, preset_config
from pruneseek.data.images import DataError, SRPairs, bicubic_upscale, list_images, load_image

__all__ = [
    "HELD_OUT", "PRESETS", "TRAIN", "VALIDATION", "DataError", "DegradationConfig", "SRPairs", "bicubic_upscale", "builtin_images",
    "builtin_path", "degrade", "list_images", "load_image", "preset_config",
]
