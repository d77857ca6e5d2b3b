"""Importing kserve without letting it read our command line.

``kserve.model_server`` parses ``sys.argv`` when it is imported (any ``import kserve`` does so),
which would make ``galley serve --help`` print KServe's options. The import runs once here, with
an empty command line.
"""

from __future__ import annotations

import sys

_saved = sys.argv
sys.argv = _saved[:1]
try:
    import kserve
    from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
    from kserve.protocol.rest.v2_endpoints import V2Endpoints, register_v2_endpoints
finally:
    sys.argv = _saved

__all__ = [
    "DataPlane",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InvalidInput",
    "ModelNotFound",
    "ModelNotReady",
    "ModelRepository",
    "ModelRepositoryExtension",
    "V2Endpoints",
    "kserve",
    "register_v1_endpoints",
    "register_v2_endpoints",
]
