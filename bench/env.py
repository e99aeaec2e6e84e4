"""The environment header of results files (defined in ``converters.env``, shared with parity)."""
from converters.env import cpu_model, environment, gpu_info, markdown_header

__all__ = ["cpu_model", "environment", "gpu_info", "markdown_header"]
