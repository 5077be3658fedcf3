"""A client for TF Serving's gRPC API, built on tensorflow-serving-api's PredictionServiceStub.

Works unchanged against `lamina serve` and the official tensorflow/serving image: it only
uses Predict, Classify and GetModelMetadata. Rows are dicts of raw feature values; the
input dtypes come from the model's `serving_raw` signature (GetModelMetadata).

Example:
    >>> client = PredictionClient("127.0.0.1:8500")
    >>> client.classify("penguins", [{"island": "Biscoe", "bill_length_mm": 45.1, ...}])
"""

import base64
import json
from typing import Dict, List, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

from lamina.constants import DEFAULT_SIGNATURE, RAW_SIGNATURE
from lamina.rows import is_missing, row_to_example, rows_to_tensors, sequence_values


class _Closing:
    """`with Client(...) as client:` closes the channel or session on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PredictionClient(_Closing):
    """Predict / Classify / GetModelMetadata against any TF Serving-protocol server."""

    def __init__(self, target: str, timeout: float = 10.0, max_message_bytes: int = 16 * 1024 * 1024,
                 tls_ca: Optional[str] = None):
        self.target = target
        self.timeout = timeout
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls_ca:
            with open(tls_ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def signature_defs(self, model: str, version: Optional[int] = None) -> Dict[str, object]:
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = version
        request.metadata_field.append("signature_def")
        response = self.stub.GetModelMetadata(request, timeout=self.timeout)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(sig_map)
        return dict(sig_map.signature_def)

    def raw_inputs(self, model: str, version: Optional[int] = None) -> Dict[str, int]:
        """Feature name -> DataType enum, from the model's serving_raw signature."""
        sigs = self.signature_defs(model, version)
        if RAW_SIGNATURE not in sigs:
            raise ValueError(f"model {model!r} has no {RAW_SIGNATURE!r} signature; signatures: {sorted(sigs)}")
        return {k: v.dtype for k, v in sigs[RAW_SIGNATURE].inputs.items()}

    def sequence_inputs(self, model: str, version: Optional[int] = None) -> List[str]:
        """The serving_raw inputs that take [batch, length] sequences."""
        sigs = self.signature_defs(model, version)
        return [k for k, v in sigs[RAW_SIGNATURE].inputs.items() if len(v.tensor_shape.dim) == 2] \
            if RAW_SIGNATURE in sigs else []

    def predict_tensors(self, model: str, tensors: Dict[str, object], signature: str = DEFAULT_SIGNATURE,
                        version: Optional[int] = None) -> Dict[str, np.ndarray]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for key, value in tensors.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self.stub.Predict(request, timeout=self.timeout)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def predict(self, model: str, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                inputs: Optional[Dict[str, int]] = None, signature: str = DEFAULT_SIGNATURE) -> Dict[str, np.ndarray]:
        """Predict on rows sent as serialized tf.Examples; missing values (None, '') are left out."""
        inputs = inputs or self.raw_inputs(model, version)
        examples = [row_to_example(r, inputs, n).SerializeToString() for n, r in enumerate(rows, 1)]
        return self.predict_tensors(model, {"inputs": np.array(examples, dtype=object)}, signature, version)

    def predict_raw(self, model: str, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                    inputs: Optional[Dict[str, int]] = None) -> Dict[str, np.ndarray]:
        """Predict on rows sent as one tensor per feature, through the serving_raw signature."""
        inputs = inputs or self.raw_inputs(model, version)
        sequences = self.sequence_inputs(model, version)
        tensors = {k: v.numpy() for k, v in rows_to_tensors(rows, inputs, sequences).items()}
        return self.predict_tensors(model, tensors, RAW_SIGNATURE, version)

    def classify(self, model: str, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                 inputs: Optional[Dict[str, int]] = None, signature: str = DEFAULT_SIGNATURE
                 ) -> List[List[tuple]]:
        """Classify rows (sent as tf.Examples); per row, (label, score) pairs in the model's class order."""
        inputs = inputs or self.raw_inputs(model, version)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        for n, row in enumerate(rows, 1):
            request.input.example_list.examples.append(row_to_example(row, inputs, n))
        response = self.stub.Classify(request, timeout=self.timeout)
        return [[(c.label, c.score) for c in result.classes] for result in response.result.classifications]


def format_predictions(outputs: Dict[str, np.ndarray]) -> List[Dict[str, object]]:
    """One dict per row: the predicted class and the scores by class, or the regression value."""
    rows = []
    if "scores" in outputs:
        classes = outputs.get("classes")
        for i, scores in enumerate(outputs["scores"]):
            names = [c.decode("utf-8") for c in classes[i]] if classes is not None else [str(j) for j in range(len(scores))]
            best = int(np.argmax(scores))
            rows.append({"class": names[best], "scores": {n: round(float(s), 6) for n, s in zip(names, scores)}})
    elif "outputs" in outputs:
        rows = [{"prediction": float(v)} for v in np.reshape(outputs["outputs"], [-1])]
    else:
        rows = [{k: v[i].tolist() for k, v in outputs.items()} for i in range(len(next(iter(outputs.values()))))]
    return rows


class RestCallError(Exception):
    """A REST call answered with an error: `code` is the gRPC status name TF Serving's status maps to."""

    HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "INVALID_ARGUMENT", 411: "INVALID_ARGUMENT",
                  413: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

    def __init__(self, status: int, message: str):
        self.status = status
        self.code = self.HTTP_CODES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
        super().__init__(message)


def _json_bytes(value):
    return {"b64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def _example_json(value, dtype: int):
    """A row's value as a :classify example holds it; a sequence cell becomes its list of numbers."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum):
        values = sequence_values(value)
        if values is not None:
            return values
    return value


class RestClient(_Closing):
    """The same calls as PredictionClient over TF Serving's REST API (`lamina serve` or tensorflow/serving).

    `url`: http(s)://host:8501. Rows are dicts of raw feature values, as for PredictionClient.
    """

    def __init__(self, url: str, timeout: float = 10.0, verify=True):
        import requests

        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.verify = verify  # True, or a CA bundle path for a self-signed server (beats REQUESTS_CA_BUNDLE)

    def close(self) -> None:
        self.session.close()

    def _model_path(self, model: str, version: Optional[int]) -> str:
        return f"{self.url}/v1/models/{model}" + (f"/versions/{version}" if version is not None else "")

    def _call(self, method: str, url: str, body: Optional[dict] = None) -> dict:
        import requests

        try:
            # NaN (a missing number, a sequence's padding) goes as the bare token NaN, which TF Serving's
            # JSON parser (RapidJSON with kParseNanAndInfFlag) and Lamina's both read; `json=` refuses it.
            data = json.dumps(body, allow_nan=True).encode("utf-8") if body is not None else None
            headers = {"Content-Type": "application/json"} if body is not None else None
            response = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                            verify=self.verify)
        except requests.Timeout:
            raise RestCallError(504, f"no answer within {self.timeout} s") from None
        except requests.ConnectionError as e:
            raise RestCallError(503, f"cannot reach {self.url}: {type(e).__name__}") from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text[:300]}
        if response.status_code != 200:
            raise RestCallError(response.status_code, payload.get("error", response.reason))
        return payload

    def status(self, model: str, version: Optional[int] = None) -> dict:
        return self._call("GET", self._model_path(model, version))

    def signature_defs(self, model: str, version: Optional[int] = None) -> Dict[str, dict]:
        answer = self._call("GET", self._model_path(model, version) + "/metadata")
        return answer["metadata"]["signature_def"]["signature_def"]

    def raw_inputs(self, model: str, version: Optional[int] = None) -> Dict[str, int]:
        from tensorflow.core.framework import types_pb2

        sigs = self.signature_defs(model, version)
        if RAW_SIGNATURE not in sigs:
            raise ValueError(f"model {model!r} has no {RAW_SIGNATURE!r} signature; signatures: {sorted(sigs)}")
        return {k: types_pb2.DataType.Value(v["dtype"]) for k, v in sigs[RAW_SIGNATURE]["inputs"].items()}

    def sequence_inputs(self, model: str, version: Optional[int] = None) -> List[str]:
        """The serving_raw inputs that take [batch, length] sequences."""
        sigs = self.signature_defs(model, version)
        return [k for k, v in sigs.get(RAW_SIGNATURE, {}).get("inputs", {}).items()
                if len(v.get("tensor_shape", {}).get("dim", [])) == 2]

    def predict_instances(self, model: str, instances: list, signature: str = DEFAULT_SIGNATURE,
                          version: Optional[int] = None) -> list:
        body = {"signature_name": signature, "instances": instances}
        return self._call("POST", self._model_path(model, version) + ":predict", body)["predictions"]

    def _columns(self, predictions: list) -> Dict[str, np.ndarray]:
        """Arrays as the gRPC client returns them: strings as bytes, so format_predictions reads both."""
        def array(values):
            a = np.array(values)
            if a.dtype.kind == "U":
                a = np.array([v.encode("utf-8") for v in a.reshape(-1)], dtype=object).reshape(a.shape)
            return a

        if predictions and isinstance(predictions[0], dict):
            return {k: array([p[k] for p in predictions]) for k in predictions[0]}
        return {"outputs": array(predictions)}

    def predict(self, model: str, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                inputs: Optional[Dict[str, int]] = None, signature: str = DEFAULT_SIGNATURE) -> Dict[str, np.ndarray]:
        """Rows sent as serialized tf.Examples ({"b64": ...}) to serving_default."""
        inputs = inputs or self.raw_inputs(model, version)
        instances = [_json_bytes(row_to_example(r, inputs, n).SerializeToString()) for n, r in enumerate(rows, 1)]
        return self._columns(self.predict_instances(model, instances, signature, version))

    def predict_raw(self, model: str, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                    inputs: Optional[Dict[str, int]] = None) -> Dict[str, np.ndarray]:
        """Rows sent as one JSON object per row to serving_raw (bytes as {"b64": ...})."""
        inputs = inputs or self.raw_inputs(model, version)
        sequences = self.sequence_inputs(model, version)
        columns = {k: v.numpy().tolist() for k, v in rows_to_tensors(rows, inputs, sequences).items()}
        # A missing float goes as NaN, which TF Serving's JSON parser and Lamina's both read.
        instances = [{k: _json_bytes(columns[k][i]) for k in columns} for i in range(len(rows))]
        return self._columns(self.predict_instances(model, instances, RAW_SIGNATURE, version))

    def classify(self, model: str, rows: Sequence[Dict[str, object]], version: Optional[int] = None,
                 inputs: Optional[Dict[str, int]] = None, signature: str = DEFAULT_SIGNATURE) -> List[List[tuple]]:
        inputs = inputs or self.raw_inputs(model, version)
        examples = []
        for n, row in enumerate(rows, 1):
            row_to_example(row, inputs, n)  # the same checks and messages as over gRPC
            examples.append({k: _example_json(v, inputs[k]) for k, v in row.items() if k in inputs and not is_missing(v)})
        body = {"signature_name": signature, "examples": examples}
        results = self._call("POST", self._model_path(model, version) + ":classify", body)["results"]
        return [[(label, score) for label, score in row] for row in results]
