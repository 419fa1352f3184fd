"""CRI runtime.v1 (Kubernetes >= 1.23; the only version CRI-O >= 1.26 and containerd 2.x serve).

A package only so that the generated stubs import each other as
``cri_api.v1.api_pb2``; the modules are generated from ``protos/v1/api.proto`` by
``scripts/gen_protos.py``.
"""
