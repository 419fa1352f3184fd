"""CRI runtime.v1alpha2 (the pre-1.26 API; containerd 1.5-1.7 still serve it).

A package only so that the generated stubs import each other as
``cri_api.v1alpha2.api_pb2``; the modules are generated from ``protos/v1alpha2/api.proto`` by
``scripts/gen_protos.py``.
"""
