"""The one reader of a run's ML Metadata store: its pipeline runs, each run's component executions
and their output artifacts.

The run summary (`summary`), `lamina runs` and lineage (`history`) and the report read runs through
this module only; it writes nothing. TFX's LocalDagRunner and Kubeflow's launcher record one
`pipeline_run` context per run, one `node` context per component (named `<pipeline>.<component>`),
and OUTPUT events from each execution to its artifacts.
"""

import dataclasses
from typing import Dict, List, Optional, Tuple


def open_metadata(path: str, readonly: bool = False):
    """An ML Metadata store in a SQLite file; `readonly` for reading while a run writes."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata

    config = metadata.sqlite_metadata_connection_config(path)
    if readonly:
        config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


@dataclasses.dataclass(frozen=True)
class ExecutionRecord:
    """One component's execution as ML Metadata records it."""

    component: str
    state: str  # NEW, RUNNING, COMPLETE, CACHED, FAILED, CANCELED
    started: float  # seconds since the epoch
    updated: float

    @property
    def finished(self) -> bool:
        return self.state in ("COMPLETE", "CACHED", "FAILED", "CANCELED")


@dataclasses.dataclass
class RunRecord:
    """One pipeline run: its context, its executions, and which component each execution is."""

    context: object  # the pipeline_run Context
    pipeline: str
    executions: list  # Execution protos
    component_of: Dict[int, str]  # execution id -> component id

    @property
    def run_id(self) -> str:
        return self.context.name

    @property
    def started(self) -> float:
        return self.context.create_time_since_epoch / 1000.0

    def states(self) -> Dict[str, str]:
        """Component id -> execution state (COMPLETE, CACHED, FAILED...)."""
        return {r.component: r.state for r in self.records()}

    def records(self) -> List[ExecutionRecord]:
        """The executions of known components, in the order they last changed."""
        from ml_metadata.proto import metadata_store_pb2

        name = metadata_store_pb2.Execution.State.Name
        records = [ExecutionRecord(self.component_of[ex.id], name(ex.last_known_state),
                                   ex.create_time_since_epoch / 1000.0, ex.last_update_time_since_epoch / 1000.0)
                   for ex in self.executions if ex.id in self.component_of]
        return sorted(records, key=lambda r: (r.updated, r.started))


def pipeline_runs(store, pipeline: Optional[str] = None, since_ms: int = 0) -> List[RunRecord]:
    """The runs `store` records, oldest first; only `pipeline`'s components when it is given, and only
    runs created at or after `since_ms` (ms since the epoch)."""
    node_type = store.get_context_type("node").id
    runs = sorted((c for c in store.get_contexts_by_type("pipeline_run") if c.create_time_since_epoch >= since_ms),
                  key=lambda c: (c.create_time_since_epoch, c.id))
    records = []
    for run in runs:
        executions = store.get_executions_by_context(run.id)
        component_of, name = {}, pipeline or ""
        for ex in executions:
            for ctx in store.get_contexts_by_execution(ex.id):
                if ctx.type_id != node_type or "." not in ctx.name:
                    continue
                owner, component = ctx.name.split(".", 1)
                if pipeline is None or owner == pipeline:
                    name, component_of[ex.id] = owner, component
        records.append(RunRecord(run, name, executions, component_of))
    return records


def latest_run(store, pipeline: str, since_ms: int = 0) -> Optional[RunRecord]:
    runs = pipeline_runs(store, pipeline, since_ms)
    return runs[-1] if runs else None


def run_outputs(store, run: RunRecord) -> Dict[Tuple[str, str], object]:
    """(component id, output key) -> artifact, for the run's executions."""
    from ml_metadata.proto import metadata_store_pb2

    if not run.component_of:
        return {}
    events = store.get_events_by_execution_ids(list(run.component_of))
    kinds = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    wanted = [e for e in events if e.type in kinds]
    artifacts = {a.id: a for a in store.get_artifacts_by_id(list({e.artifact_id for e in wanted}))}
    return {(run.component_of[e.execution_id], e.path.steps[0].key if e.path.steps else ""): artifacts[e.artifact_id]
            for e in wanted}


def custom_property(node, key: str):
    """An execution's or artifact's custom property as a Python value; None when it has none."""
    value = node.custom_properties.get(key)
    if value is None:
        return None
    return value.string_value or value.int_value or value.double_value
