"""The local runner section: the run directory, caching, and Beam's arguments."""

from typing import List, Optional

from pydantic import Field

from lamina.spec.base import StrictModel


class RunnerSpec(StrictModel):
    root: str = Field(default="lamina_runs", description="Run directory: pipeline root and ML Metadata live here.")
    pipeline_root: Optional[str] = Field(
        default=None, description="Where the artifacts go, when not under the run directory: gs://, s3://, or a "
                                  "path. ML Metadata (SQLite), the report and the logs stay in the run directory.")
    enable_cache: bool = True
    beam_args: List[str] = Field(
        default_factory=lambda: ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
    )

