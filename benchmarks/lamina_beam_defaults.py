"""`lamina` with Beam's own defaults, for side-by-side timing in `pipeline_overhead.py --beam both`:
dill as the pickler (not cloudpickle) and Beam's DoFn introspection asked every time (not kept per
DoFn, lamina.pipeline.beam_dofn_specs). Everything else is the installed `lamina`.

Usage: .venv/bin/python benchmarks/lamina_beam_defaults.py run spec.yaml
"""

import sys

from lamina.pipeline import beam_dofn_specs, local_runner

beam_dofn_specs.memoize_dofn_specs = lambda: None  # run_pipeline imports it when it runs
local_runner.BEAM_PICKLER_FLAG = "--pickle_library=dill"  # read by local_beam_args when it runs

if __name__ == "__main__":
    from lamina.pipeline.cli import main

    sys.exit(main())
