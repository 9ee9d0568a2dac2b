"""Training, as `splat train` runs it: the configuration and presets (`config.py`, also the source
of the command-line flags), the Gaussian trainer for 3D and 4D scenes (`trainer.py`, on the loop,
evaluation and checkpoints of `base.py`), the hash-grid field trainer (`field_trainer.py`),
densification strategies (`strategies.py`), losses, run folders (`runs.py`) and distributed
training (`distributed.py`)."""
