"""`lamina submit` with the real kfp.Client against a small KFP v2beta1 REST server on loopback.

The server implements the endpoints the client calls (healthz, list/upload pipelines and
versions, list/create experiments, create run, create recurring run), keeps what it was sent, and
can be told to answer with an error."""

import cgi
import io
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lamina.pipeline import cli
from lamina.pipeline.kubeflow_submit import SubmitError, submit

API = "/apis/v2beta1"


class FakeKFP:
    def __init__(self):
        self.requests = []  # (method, path, query, body)
        self.pipelines = {}  # name -> id
        self.experiments = {}
        self.fail = None  # (status, message) to answer every POST with
        self.run_states = ["PENDING", "RUNNING", "SUCCEEDED"]  # what GET /runs/<id> answers, one per call
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body):
                url = urllib.parse.urlparse(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                fake.requests.append((self.command, url.path, query, body))
                return url.path, query

            def do_GET(self):
                path, query = self._record(None)
                name = None
                if "filter" in query:
                    name = json.loads(query["filter"])["predicates"][0]["stringValue"]
                if path == f"{API}/healthz":
                    return self._reply(200, {"multi_user": False})
                if path == f"{API}/pipelines":
                    found = [{"pipeline_id": fake.pipelines[name], "display_name": name}] \
                        if name in fake.pipelines else []
                    return self._reply(200, {"pipelines": found, "total_size": len(found)} if found else {})
                if path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
                    pid = path.split("/")[-2]
                    return self._reply(200, {"pipeline_versions": [
                        {"pipeline_id": pid, "pipeline_version_id": "version-1", "display_name": "first"}],
                        "total_size": 1})
                if path.startswith(f"{API}/runs/"):
                    state = fake.run_states.pop(0) if len(fake.run_states) > 1 else fake.run_states[0]
                    return self._reply(200, {"run_id": path.split("/")[-1], "state": state})
                if path == f"{API}/experiments":
                    found = [{"experiment_id": fake.experiments[name], "display_name": name}] \
                        if name in fake.experiments else []
                    return self._reply(200, {"experiments": found, "total_size": len(found)} if found else {})
                self._reply(404, {"error": f"no route {path}", "code": 5, "message": f"no route {path}"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                ctype, params = cgi.parse_header(self.headers.get("Content-Type", ""))
                if ctype == "multipart/form-data":
                    params["boundary"] = params["boundary"].encode()
                    form = cgi.parse_multipart(io.BytesIO(raw), {**params, "CONTENT-LENGTH": str(len(raw))})
                    body = {k: v[0] for k, v in form.items()}
                else:
                    body = json.loads(raw or b"{}")
                path, query = self._record(body)
                if fake.fail:
                    status, message = fake.fail
                    return self._reply(status, {"error": message, "code": 3, "message": message})
                if path == f"{API}/pipelines/upload":
                    pid = f"pipeline-{len(fake.pipelines) + 1}"
                    fake.pipelines[query["name"]] = pid
                    return self._reply(200, {"pipeline_id": pid, "display_name": query["name"]})
                if path == f"{API}/pipelines/upload_version":
                    return self._reply(200, {"pipeline_id": query["pipelineid"], "pipeline_version_id": "version-2",
                                             "display_name": query["name"]})
                if path == f"{API}/experiments":
                    eid = f"experiment-{len(fake.experiments) + 1}"
                    fake.experiments[body["display_name"]] = eid
                    return self._reply(200, {"experiment_id": eid, "display_name": body["display_name"]})
                if path == f"{API}/runs":
                    return self._reply(200, {"run_id": "run-1", "display_name": body["display_name"],
                                             "state": "PENDING"})
                if path == f"{API}/recurringruns":
                    return self._reply(200, {"recurring_run_id": "recurring-1",
                                             "display_name": body["display_name"], "status": "ENABLED"})
                self._reply(404, {"error": f"no route {path}", "code": 5, "message": f"no route {path}"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def posts(self):
        return [(p, q, b) for m, p, q, b in self.requests if m == "POST"]


@pytest.fixture
def kfp_server():
    server = FakeKFP()
    yield server
    server.httpd.shutdown()


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from lamina.pipeline.kubeflow_runner import compile_pipeline
    from tests.helpers import make_spec
    from tests.pipeline.test_kubeflow import KUBEFLOW

    base = tmp_path_factory.mktemp("submit")
    spec = make_spec(base, data={"path": "gs://acme-ml/data/penguins.csv"}, kubeflow=KUBEFLOW)
    return compile_pipeline(spec, str(base / "pipeline.json"))


def test_first_submit_uploads_the_pipeline_and_creates_a_run(kfp_server, package, capsys):
    assert cli.main(["submit", package, "--host", kfp_server.host]) == 0
    out = capsys.readouterr().out.strip()
    assert out == (f"Uploaded {package} (new pipeline of pipeline pipeline-1); run run-1: "
                   f"{kfp_server.host}/#/runs/details/run-1")
    posts = kfp_server.posts()
    assert [p for p, _, _ in posts] == [f"{API}/pipelines/upload", f"{API}/experiments", f"{API}/runs"]
    upload_query, upload_body = posts[0][1], posts[0][2]
    assert upload_query["name"] == "penguins"
    assert json.loads(upload_body["uploadfile"]) == json.load(open(package))  # the compiled file, unchanged
    assert posts[1][2]["display_name"] == "lamina"
    run = posts[2][2]
    assert run["experiment_id"] == "experiment-1"
    assert run["pipeline_version_reference"] == {"pipeline_id": "pipeline-1", "pipeline_version_id": "version-1"}
    assert run["display_name"].startswith("penguins-")


def test_a_second_submit_uploads_a_new_version_and_schedules_it(kfp_server, package):
    kfp_server.pipelines["penguins"] = "pipeline-7"
    kfp_server.experiments["lamina"] = "experiment-3"
    result = submit(package, kfp_server.host, schedule="0 0 3 * * *")
    assert (result.pipeline_id, result.version_id, result.experiment_id, result.recurring_run_id) == (
        "pipeline-7", "version-2", "experiment-3", "recurring-1")
    assert result.url == f"{kfp_server.host}/#/recurringrun/details/recurring-1"
    posts = kfp_server.posts()
    assert [p for p, _, _ in posts] == [f"{API}/pipelines/upload_version", f"{API}/recurringruns"]
    assert posts[0][1]["pipelineid"] == "pipeline-7" and posts[0][1]["name"].startswith("penguins-")
    rec = posts[1][2]
    assert rec["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert rec["pipeline_version_reference"] == {"pipeline_id": "pipeline-7", "pipeline_version_id": "version-2"}
    assert rec["experiment_id"] == "experiment-3" and rec["mode"] == "ENABLE" and int(rec["max_concurrency"]) == 1


def test_the_schedule_can_come_from_the_spec(kfp_server, package, tmp_path, capsys):
    import yaml

    from tests.helpers import REPO
    from tests.pipeline.test_kubeflow import KUBEFLOW

    d = yaml.safe_load(open(REPO / "examples" / "penguins" / "spec.yaml"))
    d["kubeflow"] = {**KUBEFLOW, "schedule": "0 30 2 * * 1"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    assert cli.main(["submit", package, "--host", kfp_server.host, "--spec", str(tmp_path / "spec.yaml")]) == 0
    assert "recurring run recurring-1 on '0 30 2 * * 1'" in capsys.readouterr().out
    assert kfp_server.posts()[-1][2]["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * 1"}}


def test_api_errors_are_one_line_with_the_host(kfp_server, package, capsys):
    kfp_server.fail = (400, "Invalid input error: Failed to create a pipeline: the spec is\n invalid")
    with pytest.raises(SubmitError) as info:
        submit(package, kfp_server.host)
    assert str(info.value) == (f"{kfp_server.host}: KFP API answered 400 (Bad Request): Invalid input error: "
                               f"Failed to create a pipeline: the spec is invalid")
    kfp_server.fail = (401, "Unauthenticated: no token")
    assert cli.main(["submit", package, "--host", kfp_server.host]) == 1
    assert capsys.readouterr().err.strip() == (f"{kfp_server.host}: KFP API answered 401 (not authenticated): "
                                               f"Unauthenticated: no token")


def test_an_unreachable_host_is_one_line(package, capsys):
    import socket

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert cli.main(["submit", package, "--host", host]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"{host}: cannot reach the Kubeflow Pipelines API (connection refused or no route); "
                   f"is the host right and the port forwarded?")


def test_wait_follows_the_run_and_exits_by_its_outcome(kfp_server, package, capsys):
    args = ["submit", package, "--host", kfp_server.host, "--wait", "--poll-seconds", "0.01",
            "--run-name", "nightly-42", "--service-account", "lamina-runner"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    states = [line.split(": ")[-1] for line in out.splitlines() if line.startswith("  [")]
    assert states == ["PENDING", "RUNNING", "SUCCEEDED"]
    run = [b for p, _, b in kfp_server.posts() if p == f"{API}/runs"][-1]
    assert run["display_name"] == "nightly-42" and run["service_account"] == "lamina-runner"

    kfp_server.run_states = ["RUNNING", "FAILED"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"run run-1 ended FAILED: {kfp_server.host}/#/runs/details/run-1"


def test_the_service_account_comes_from_the_spec_and_reaches_a_recurring_run(kfp_server, package, tmp_path):
    import yaml

    from tests.helpers import REPO
    from tests.pipeline.test_kubeflow import KUBEFLOW

    d = yaml.safe_load(open(REPO / "examples" / "penguins" / "spec.yaml"))
    d["kubeflow"] = {**KUBEFLOW, "schedule": "0 0 4 * * *", "service_account": "pipeline-sa"}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(d))
    assert cli.main(["submit", package, "--host", kfp_server.host, "--spec", str(tmp_path / "spec.yaml"),
                     "--run-name", "nightly"]) == 0
    rec = kfp_server.posts()[-1][2]
    assert (rec["display_name"], rec["service_account"]) == ("nightly", "pipeline-sa")


def test_runtime_parameters_are_checked_against_the_pipeline(kfp_server, package, capsys):
    assert cli.main(["submit", package, "--host", kfp_server.host, "--param", "epochs=3"]) == 1
    assert capsys.readouterr().err.strip() == (f"{package}: no runtime parameter 'epochs'; the pipeline takes none.")
    assert cli.main(["submit", package, "--host", kfp_server.host, "--param", "epochs"]) == 2
    assert "--param expects KEY=VALUE. Received: 'epochs'" in capsys.readouterr().err
    assert kfp_server.posts() == []  # nothing was uploaded
