"""The generated Python stubs of the Kubernetes CRI, shared by ``sensor`` and ``fakecri``.

The CRI sources are ``protos/<version>/api.proto`` (runtime.v1 and
runtime.v1alpha2); the ``cri_api/<version>/api_pb2*.py`` modules are generated
from them by ``scripts/gen_protos.py`` and committed, so installing this
project needs no protoc. The name is project-specific on purpose: a top-level
``protos`` module would collide with other projects'. Use :func:`api` to pick a version at run time::

    from cri_api import api
    cri = api("v1")
    request = cri.pb2.ListContainersRequest()
    stub = cri.pb2_grpc.RuntimeServiceStub(channel)
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

__all__ = ["API_VERSIONS", "CriApi", "api"]

#: CRI API versions shipped here, newest first (the order clients should try).
API_VERSIONS: tuple[str, ...] = ("v1", "v1alpha2")


class CriApi(NamedTuple):
    """The generated modules of one CRI API version."""

    version: str
    pb2: ModuleType  # messages and enums
    pb2_grpc: ModuleType  # RuntimeService/ImageService stubs, servicers, registration helpers


def api(version: str) -> CriApi:
    """Return the generated modules for CRI ``version`` ("v1" or "v1alpha2")."""
    if version not in API_VERSIONS:
        raise ValueError(f"unknown CRI API version {version!r}: expected one of {', '.join(map(repr, API_VERSIONS))}")
    pb2 = importlib.import_module(f"{__name__}.{version}.api_pb2")
    pb2_grpc = importlib.import_module(f"{__name__}.{version}.api_pb2_grpc")
    return CriApi(version, pb2, pb2_grpc)
