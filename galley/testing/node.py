"""The real one-node cluster of ``scripts/cluster`` as tests and benchmarks use it.

``node()`` reuses a node that is already up (as CI brings it up in its own timed phase), or starts
one and builds the images, and stops only what it started. kubectl is the node's own version
(``KUBECTL`` from ``scripts/cluster up``), driven as a user drives it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Node:
    """What ``scripts/cluster up`` and ``images`` printed."""

    kubeconfig: str
    host_ip: str
    kubectl_path: str
    helm_values: str

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        """Run kubectl; its stdout, or an AssertionError with its stderr (what polling treats as "not yet")."""
        try:
            result = subprocess.run([self.kubectl_path, *args], input=input, capture_output=True, text=True,
                                    env=self.env(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"kubectl {' '.join(args)}: no answer in {timeout:.0f}s") from None
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json``, parsed."""
        parsed: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return parsed

    def apply(self, manifest: str) -> None:
        self.kubectl("apply", "-f", "-", input=manifest)

    def helm(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([str(ROOT / "scripts" / "helm"), *args], capture_output=True, text=True,
                                env=self.env(), timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    @contextmanager
    def port_forward(self, target: str, port: int, namespace: str = "default") -> Iterator[str]:
        """``kubectl port-forward`` to a loopback port; yields ``http://127.0.0.1:PORT``."""
        process = subprocess.Popen([self.kubectl_path, "-n", namespace, "port-forward", "--address", "127.0.0.1",
                                    target, f":{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=self.env())
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            if not match:
                process.kill()
                error = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"port-forward {target}: {line.strip()} {error}")
            yield f"http://127.0.0.1:{match.group(1)}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _parse(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _cluster(command: str) -> dict[str, str]:
    result = subprocess.run([str(ROOT / "scripts" / "cluster"), command], capture_output=True, text=True,
                            timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/cluster {command} failed:\n{result.stderr[-4000:]}")
    return _parse(result.stdout)


@contextmanager
def node() -> Iterator[Node]:
    """A Ready node with Galley's images loaded: the running one, or one started (and stopped) here."""
    status = subprocess.run([str(ROOT / "scripts" / "cluster"), "status"], capture_output=True, text=True)
    started = status.returncode != 0
    up = _cluster("up")
    try:
        images = _cluster("images")
        yield Node(up["KUBECONFIG"], up["GALLEY_HOST_IP"], up["KUBECTL"], images["HELM_VALUES"])
    finally:
        if started:
            _cluster("down")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of type ``kind``, if any."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None
