"""The local runner section: the run directory, caching, and Beam's arguments."""

from typing import List

from pydantic import Field

from lamina.pipeline.spec.base import StrictModel


class RunnerSpec(StrictModel):
    root: str = Field(default="lamina_runs", description="Run directory: pipeline root and ML Metadata live here.")
    enable_cache: bool = True
    beam_args: List[str] = Field(
        default_factory=lambda: ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )

