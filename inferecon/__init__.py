"""inferecon: measure GPUs, calibrate an inference cost model, predict the speed/cost frontier."""

__version__ = "0.1.0"
