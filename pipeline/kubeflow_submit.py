"""`lamina submit`: upload a compiled pipeline to Kubeflow Pipelines 2.x and run or schedule it.

Everything goes through `kfp.Client` (the KFP v2beta1 REST API): the pipeline is uploaded the
first time, and as a new version of the pipeline of the same name after that; then a run is
created, or a recurring run when a cron schedule is given, with its name, runtime parameters
(checked against the ones the pipeline declares) and the Kubernetes service account its pods
run as. `wait_for_run` follows a run's state until it ends. Any failure of the API (host
unreachable, authentication, validation) becomes one `SubmitError` line naming the host.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import time
from typing import Callable, Dict, Optional

# A KFP v2 run's states that end it, and the one that means it worked.
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


class SubmitError(RuntimeError):
    """The KFP API refused or could not be reached; the message is one line with the host."""


@dataclasses.dataclass
class Submission:
    pipeline_id: str
    version_id: Optional[str]
    experiment_id: str
    run_id: Optional[str] = None
    recurring_run_id: Optional[str] = None
    url: str = ""
    new_pipeline: bool = False


def _api_error(host: str, e: Exception) -> SubmitError:
    status = getattr(e, "status", None)
    if status is not None:  # kfp_server_api.ApiException: the server answered
        message = ""
        try:
            body = json.loads(getattr(e, "body", "") or "{}")
            message = body.get("message") or body.get("error") or ""
        except (ValueError, AttributeError):
            message = str(getattr(e, "body", "") or "")
        reason = {401: "not authenticated", 403: "permission denied", 404: "not found"}.get(
            status, getattr(e, "reason", "") or "error")
        return SubmitError(f"{host}: KFP API answered {status} ({reason}): {' '.join(message.split())[:300]}")
    text = " ".join(str(e).split())
    if "Connection refused" in text or "Max retries exceeded" in text or "Failed to establish" in text:
        return SubmitError(f"{host}: cannot reach the Kubeflow Pipelines API (connection refused or no route); "
                           f"is the host right and the port forwarded?")
    return SubmitError(f"{host}: {type(e).__name__}: {text[:300]}")


def ui_url(host: str) -> str:
    """The KFP UI's address for run links: the API host itself (the UI and API share it), as a URL."""
    host = host.rstrip("/")
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


def _read_package(package: str) -> bytes:
    with open(package, "rb") as f:
        return f.read()


def pipeline_name(package: str, content: Optional[bytes] = None) -> str:
    """The pipeline's name in a compiled package (`content`: its bytes, when already read)."""
    import yaml

    from lamina.pipeline.kubeflow_runner import read_package

    try:
        spec, _ = read_package((_read_package(package) if content is None else content).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, yaml.YAMLError):
        raise SubmitError(f"{package}: not a KFP v2 pipeline spec (JSON or YAML); write one with "
                          f"`lamina compile`.") from None
    try:
        return spec["pipelineInfo"]["name"]
    except (KeyError, TypeError):
        raise SubmitError(f"{package}: not a KFP v2 pipeline spec (no pipelineInfo.name); "
                          f"write one with `lamina compile`.") from None


def check_parameters(package: str, content: bytes, params: Dict[str, str]) -> None:
    """Raises SubmitError when `params` names a parameter the pipeline does not declare."""
    from lamina.pipeline.kubeflow_runner import read_package

    declared = read_package(content.decode("utf-8"))[0].get("root", {}).get("inputDefinitions", {}).get(
        "parameters", {})
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise SubmitError(f"{package}: no runtime parameter {', '.join(map(repr, unknown))}; the pipeline takes "
                          f"{', '.join(sorted(declared)) or 'none'}.")


def submit(package: str, host: str, schedule: Optional[str] = None, experiment: str = "lamina",
           run_name: Optional[str] = None, params: Optional[Dict[str, str]] = None,
           service_account: Optional[str] = None) -> Submission:
    """Uploads `package` (or a new version of it), then starts a run or a recurring run."""
    import kfp

    content = _read_package(package)
    name = pipeline_name(package, content)
    params = dict(params or {})
    check_parameters(package, content, params)
    digest = hashlib.sha256(content).hexdigest()[:12]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    quiet = io.StringIO()  # kfp prints its own "... details: <link>" lines; Lamina prints one summary
    try:
        with contextlib.redirect_stdout(quiet):
            client = kfp.Client(host=host)
            pipeline_id = client.get_pipeline_id(name)
            new = pipeline_id is None
            if new:
                pipeline_id = client.upload_pipeline(package, pipeline_name=name).pipeline_id
                # The upload made the pipeline's first version; a run needs its id.
                versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
                version_id = versions.pipeline_versions[0].pipeline_version_id
            else:
                version_id = client.upload_pipeline_version(
                    package, pipeline_version_name=f"{name}-{stamp}-{digest}",
                    pipeline_id=pipeline_id).pipeline_version_id
            experiment_id = client.create_experiment(experiment).experiment_id
            job = run_name or f"{name}-{stamp}"
            result = Submission(pipeline_id, version_id, experiment_id, new_pipeline=new)
            prefix = ui_url(host)
            if schedule:
                rec = client.create_recurring_run(experiment_id, job, cron_expression=schedule,
                                                  pipeline_id=pipeline_id, version_id=version_id, params=params,
                                                  service_account=service_account)
                result.recurring_run_id = rec.recurring_run_id
                result.url = f"{prefix}/#/recurringrun/details/{rec.recurring_run_id}"
            else:
                run = client.run_pipeline(experiment_id, job, pipeline_id=pipeline_id, version_id=version_id,
                                          params=params, service_account=service_account)
                result.run_id = run.run_id
                result.url = f"{prefix}/#/runs/details/{run.run_id}"
    except SubmitError:
        raise
    except Exception as e:  # kfp raises ApiException, urllib3 and ValueError types: one line each
        raise _api_error(host, e) from None
    return result


def wait_for_run(host: str, run_id: str, poll_seconds: float = 10.0, timeout: Optional[float] = None,
                 on_state: Optional[Callable[[str, float], None]] = None) -> str:
    """Polls the run until it ends; returns its final state. `on_state(state, seconds)` hears each change."""
    import kfp

    started = time.monotonic()
    last = None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            client = kfp.Client(host=host)
        while True:
            state = str(client.get_run(run_id).state or "PENDING")
            if state != last:
                last = state
                if on_state:
                    on_state(state, time.monotonic() - started)
            if state in FINAL_STATES:
                return state
            if timeout is not None and time.monotonic() - started > timeout:
                raise SubmitError(f"{host}: run {run_id} is still {state} after {timeout:.0f}s; it keeps running "
                                  f"on the cluster.")
            # The KFP v2beta1 API has no watch or long-poll for a run, only GET; kfp's own
            # wait_for_run_completion polls the same way, but cannot report each state.
            time.sleep(poll_seconds)
    except SubmitError:
        raise
    except Exception as e:  # the same one-line errors as submit
        raise _api_error(host, e) from None
