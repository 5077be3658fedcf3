"""Beam's DoFn introspection, asked once per DoFn instead of about nine times.

Apache Beam 2.61 calls `userstate.get_dofn_specs(dofn)` each time it needs to know whether a DoFn
keeps state or timers: when a ParDo is built, visited by the DirectRunner, turned into its runner
API proto, checked for keyed input, and again when a bundle processor unpickles it. Each call
lists every attribute of the DoFn (`dir`) and builds an `inspect.signature` for each of its
methods. On the penguins example that is 4,900 calls over 550 DoFns, and 7.4 s of a 52 s run under
cProfile (docs/benchmarks.md, "Beam's pickling and DoFn introspection").

The answer depends only on the DoFn's methods and, for a `beam.Map(fn)`, on the wrapped function,
and neither changes after the DoFn is made. So `memoize_dofn_specs()` keeps each instance's answer,
keyed by the instance's identity (not its `__eq__`), for as long as the instance lives; every caller
gets its own copies of the two sets. A DoFn that cannot be weakly referenced is asked every time, as
before. Errors (duplicate parameters) are raised on every call, as before, since they are not kept.

`lamina.pipeline.local_runner.run_pipeline` installs it in its own process. Beam's worker processes
(multi_processing mode) and Kubeflow's component containers run Beam unpatched.
"""

import weakref
from typing import Callable, Dict, Set, Tuple

__all__ = ["memoize_dofn_specs", "MemoizedDofnSpecs"]


class MemoizedDofnSpecs:
    """`get_dofn_specs` with each live DoFn's answer kept: called like the function it wraps."""

    def __init__(self, ask: Callable):
        self.ask = ask  # Beam's own get_dofn_specs
        self._answers: Dict[int, Tuple[weakref.ref, Tuple[frozenset, frozenset]]] = {}
        self.asked = 0  # how many times Beam's function ran (tests read it)

    def __call__(self, dofn) -> Tuple[Set, Set]:
        key = id(dofn)
        kept = self._answers.get(key)
        if kept is not None and kept[0]() is dofn:
            return set(kept[1][0]), set(kept[1][1])
        state, timers = self.ask(dofn)
        self.asked += 1
        try:
            ref = weakref.ref(dofn, lambda _, key=key: self._forget(key))
        except TypeError:  # no weak references (a class with __slots__): not kept
            return state, timers
        # One dict operation at a time, each atomic under the GIL: Beam's worker threads may share it. The
        # worst race drops an entry, which is asked again.
        self._answers[key] = (ref, (frozenset(state), frozenset(timers)))
        return set(state), set(timers)

    def _forget(self, key: int) -> None:
        kept = self._answers.get(key)
        if kept is not None and kept[0]() is None:  # the key may belong to a newer DoFn by now
            self._answers.pop(key, None)

    def __len__(self) -> int:
        return len(self._answers)


def memoize_dofn_specs() -> MemoizedDofnSpecs:
    """Replaces `apache_beam.transforms.userstate.get_dofn_specs` with a memoized one (once per process)
    and returns it. `is_stateful_dofn` and `validate_stateful_dofn` look the function up in that module,
    and `ParDo.to_runner_api_parameter` calls it through the module, so all of them get the answers kept."""
    from apache_beam.transforms import userstate

    current = userstate.get_dofn_specs
    if isinstance(current, MemoizedDofnSpecs):
        return current
    memo = MemoizedDofnSpecs(current)
    userstate.get_dofn_specs = memo
    return memo
