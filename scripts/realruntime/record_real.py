#!/usr/bin/env python3
"""Record real containerd releases with ``fakecri record`` into tests/fidelity/recordings/.

    python scripts/realruntime/record_real.py [1.7 2.1]     # as root; each in its own private containerd

Each release runs in a throw-away private containerd (scripts/realruntime/containerd.py); the
recording is written to ``tests/fidelity/recordings/containerd-<release>.json``. Check the diff
before committing: docs/fidelity.md says which differences are the runtime's own nondeterminism.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from fakecri.record import Recorder, Target, dumps  # noqa: E402
from realruntime import containerd as rr  # noqa: E402

OUT = ROOT / "tests" / "fidelity" / "recordings"


def record(release: str) -> Path:
    with tempfile.TemporaryDirectory(prefix="crr-", dir="/tmp") as tmp, \
            rr.running_containerd(tmp, release=release) as h:
        rec = Recorder(Target(addr=h.addr, busybox_image=h.busybox_image, pause_image=h.pause_image,
                              log_root=str(h.tmpdir / "pod-logs"), cgroup_parent=h.cgroup_parent))
        try:
            out = rec.record()
        finally:
            rec.close()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"containerd-{release}.json"
    path.write_text(dumps(out))
    return path


def main(argv: list[str]) -> int:
    for release in argv or ["1.7", "2.1"]:
        print(record(release))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
