"""The environment header of results files (defined in ``converters.env``, shared with parity)."""
from converters.env import (available_cpus, cpu_model, environment, gpu_info, library_versions,
                            markdown_header)

__all__ = ["available_cpus", "cpu_model", "environment", "gpu_info", "library_versions",
           "markdown_header"]
