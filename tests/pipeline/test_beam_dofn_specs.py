"""Beam's DoFn introspection kept per DoFn (lamina.pipeline.beam_dofn_specs): the same answers as Beam's
own function, asked once per live instance, by identity, and a stateful pipeline still runs right."""

import gc

import apache_beam as beam
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer

from lamina.pipeline.beam_dofn_specs import MemoizedDofnSpecs, memoize_dofn_specs

BEAMS_OWN = userstate.get_dofn_specs


class Plain(beam.DoFn):
    def process(self, element):
        yield element


class Buffered(beam.DoFn):
    BAG = BagStateSpec("bag", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def process(self, element, bag=beam.DoFn.StateParam(BAG), flush=beam.DoFn.TimerParam(FLUSH)):
        bag.add(element[1])
        flush.set(0)

    @on_timer(FLUSH)
    def on_flush(self, bag=beam.DoFn.StateParam(BAG)):
        yield sum(bag.read())


class Counting(beam.DoFn):
    """A running total per key, kept in Beam's state."""
    SEEN = BagStateSpec("seen", VarIntCoder())

    def process(self, element, seen=beam.DoFn.StateParam(SEEN)):
        seen.add(element[1])
        yield element[0], sum(seen.read())


class AllEqual(beam.DoFn):
    """Every instance equals every other: the memo must still tell them apart."""

    def __init__(self, stateful):
        self.stateful = stateful

    def __eq__(self, other):
        return True

    def __hash__(self):
        return 0

    def process(self, element):
        yield element


class AllEqualStateful(AllEqual):
    BAG = BagStateSpec("bag", VarIntCoder())

    def process(self, element, bag=beam.DoFn.StateParam(BAG)):
        yield element


class Twice(beam.DoFn):
    BAG = BagStateSpec("bag", VarIntCoder())

    def process(self, element, a=beam.DoFn.StateParam(BAG), b=beam.DoFn.StateParam(BAG)):
        yield element


def names(specs):
    state, timers = specs
    return sorted(s.name for s in state), sorted(t.name for t in timers)


@pytest.fixture
def memo(monkeypatch):
    monkeypatch.setattr(userstate, "get_dofn_specs", BEAMS_OWN)  # put back after the test
    return memoize_dofn_specs()


def test_the_same_answers_as_beams_own_asked_once_per_instance(memo):
    assert isinstance(userstate.get_dofn_specs, MemoizedDofnSpecs) and memoize_dofn_specs() is memo
    mapped = beam.Map(lambda x: x + 1).fn  # a CallableWrapperDoFn: its answer depends on the wrapped function
    cases = [(Plain(), ([], [])), (Buffered(), (["bag"], ["ts-flush"])), (Counting(), (["seen"], [])),
             (mapped, ([], []))]
    for dofn, expected in cases:
        for _ in range(9):  # Beam asks about nine times per DoFn in a run
            assert names(userstate.get_dofn_specs(dofn)) == names(BEAMS_OWN(dofn)) == expected
    assert memo.asked == len(cases) == len(memo)
    assert userstate.is_stateful_dofn(cases[1][0]) and not userstate.is_stateful_dofn(cases[0][0])
    assert memo.asked == len(cases)


def test_instances_are_told_apart_by_identity_and_callers_get_copies(memo):
    plain, stateful = AllEqual(False), AllEqualStateful(True)
    assert plain == stateful and hash(plain) == hash(stateful)
    assert names(userstate.get_dofn_specs(plain)) == ([], [])
    assert names(userstate.get_dofn_specs(stateful)) == (["bag"], [])
    state, _ = userstate.get_dofn_specs(stateful)
    state.clear()  # a caller's change reaches no other caller
    assert names(userstate.get_dofn_specs(stateful)) == (["bag"], [])
    assert memo.asked == 2


def test_a_dead_dofn_is_forgotten_and_errors_are_raised_every_time(memo):
    dofn = Buffered()
    userstate.get_dofn_specs(dofn)
    assert len(memo) == 1
    del dofn
    gc.collect()
    assert len(memo) == 0
    twice = Twice()
    for _ in range(2):
        with pytest.raises(ValueError, match="has duplicate process method parameters"):
            userstate.get_dofn_specs(twice)


def test_a_stateful_pipeline_gives_the_same_result_with_the_memo(memo):
    data = [("a", 1), ("b", 10), ("a", 2), ("a", 3), ("b", 20)]
    options = beam.options.pipeline_options.PipelineOptions(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1", "--pickle_library=cloudpickle"])
    with beam.Pipeline(options=options) as p:
        totals = (p | beam.Create(data) | beam.ParDo(Counting())
                  | beam.combiners.Top.PerKey(1) | beam.Map(lambda kv: (kv[0], kv[1][0])))
        assert_that(totals, equal_to([("a", 6), ("b", 30)]))
    assert memo.asked > 0
