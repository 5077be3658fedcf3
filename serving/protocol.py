"""The errors a TF Serving client is told about, with their gRPC status names.

The protocol's names (signatures, methods, the warmup file, the metrics path, the request bounds)
live in `lamina.constants`, beside the other names more than one room uses.
"""

class ServingError(Exception):
    """An error for the client; `code` is a grpc.StatusCode name (REST maps it to an HTTP status)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)


def invalid_argument(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def permission_denied(message: str) -> ServingError:
    return ServingError("PERMISSION_DENIED", message)
