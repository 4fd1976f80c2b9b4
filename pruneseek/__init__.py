"""pruneseek: decide which transformer layers of a diffusion model to remove, and export the decision."""
__version__ = "0.1.0"
