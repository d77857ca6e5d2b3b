"""A checker of the Pod Security Standards ``restricted`` profile, written for the tests.

The rules are those the Kubernetes documentation lists for ``baseline`` and ``restricted``
(https://kubernetes.io/docs/concepts/security/pod-security-standards/), read field by field. The
real node runs Kubernetes 1.20, whose API server has no Pod Security admission and ignores the
``pod-security.kubernetes.io/enforce`` label: this checker is what proves it there. Each rule is
a small function from a pod to the violations it finds, named by field path, so a failing test
says which field broke which rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Pod = Mapping[str, Any]
"""A pod spec (``spec`` of a Pod, ``spec.template.spec`` of a workload, a KServe predictor)."""

CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")
BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
RESTRICTED_ADDABLE = frozenset({"NET_BIND_SERVICE"})
ALLOWED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                             "projected", "secret"})
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
                          "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
                          "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                          "net.ipv4.tcp_keepalive_probes"})
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
SECCOMP_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_TYPES = frozenset({"RuntimeDefault", "Localhost"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def containers(pod: Pod) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container of the pod with its field path: init, regular and ephemeral alike."""
    for kind in CONTAINER_KINDS:
        for index, container in enumerate(pod.get(kind) or []):
            yield f"{kind}[{index}]", container


def _context(container: Mapping[str, Any]) -> Mapping[str, Any]:
    return container.get("securityContext") or {}


def _pod_context(pod: Pod) -> Mapping[str, Any]:
    return pod.get("securityContext") or {}


# Baseline


def host_namespaces(pod: Pod) -> list[str]:
    return [f"spec.{field} must be false" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)]


def host_process(pod: Pod) -> list[str]:
    found = ["spec.securityContext.windowsOptions.hostProcess must be false"] \
        if (_pod_context(pod).get("windowsOptions") or {}).get("hostProcess") else []
    return found + [f"{path}.securityContext.windowsOptions.hostProcess must be false"
                    for path, c in containers(pod) if (_context(c).get("windowsOptions") or {}).get("hostProcess")]


def privileged(pod: Pod) -> list[str]:
    return [f"{path}.securityContext.privileged must be false" for path, c in containers(pod)
            if _context(c).get("privileged")]


def host_ports(pod: Pod) -> list[str]:
    return [f"{path}.ports[{i}].hostPort must be unset or 0" for path, c in containers(pod)
            for i, port in enumerate(c.get("ports") or []) if port.get("hostPort")]


def selinux(pod: Pod) -> list[str]:
    contexts = [("spec.securityContext", _pod_context(pod))]
    contexts += [(f"{path}.securityContext", _context(c)) for path, c in containers(pod)]
    found = []
    for path, context in contexts:
        options = context.get("seLinuxOptions") or {}
        if options.get("type", "") not in SELINUX_TYPES:
            found.append(f"{path}.seLinuxOptions.type {options['type']!r} is not a container type")
        found += [f"{path}.seLinuxOptions.{key} must be unset" for key in ("user", "role") if options.get(key)]
    return found


def proc_mount(pod: Pod) -> list[str]:
    return [f"{path}.securityContext.procMount must be Default" for path, c in containers(pod)
            if _context(c).get("procMount", "Default") != "Default"]


def sysctls(pod: Pod) -> list[str]:
    return [f"spec.securityContext.sysctls {s.get('name')!r} is not a safe sysctl"
            for s in _pod_context(pod).get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]


def apparmor(pod: Pod, annotations: Mapping[str, str]) -> list[str]:
    found = [f"metadata.annotations[{key!r}] {value!r} must be runtime/default or localhost/*"
             for key, value in annotations.items() if key.startswith(APPARMOR_ANNOTATION)
             and value != "runtime/default" and not value.startswith("localhost/")]
    contexts = [("spec.securityContext", _pod_context(pod))]
    contexts += [(f"{path}.securityContext", _context(c)) for path, c in containers(pod)]
    return found + [f"{path}.appArmorProfile.type must be RuntimeDefault or Localhost" for path, context in contexts
                    if "appArmorProfile" in context and context["appArmorProfile"].get("type") not in APPARMOR_TYPES]


# Restricted


def volume_types(pod: Pod) -> list[str]:
    found = []
    for index, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"}
        found += [f"spec.volumes[{index}] ({volume.get('name')}) is a {kind} volume" for kind in sorted(kinds)
                  if kind not in ALLOWED_VOLUMES]
    return found


def privilege_escalation(pod: Pod) -> list[str]:
    return [f"{path}.securityContext.allowPrivilegeEscalation must be false" for path, c in containers(pod)
            if _context(c).get("allowPrivilegeEscalation") is not False]


def run_as_non_root(pod: Pod) -> list[str]:
    """True on the pod or on every container, and false nowhere (a container's value wins)."""
    pod_value = _pod_context(pod).get("runAsNonRoot")
    found = ["spec.securityContext.runAsNonRoot must not be false"] if pod_value is False else []
    for path, c in containers(pod):
        value = _context(c).get("runAsNonRoot")
        if value is False or (value is None and pod_value is not True):
            found.append(f"{path}.securityContext.runAsNonRoot must be true (on it or on the pod)")
    return found


def run_as_user(pod: Pod) -> list[str]:
    found = ["spec.securityContext.runAsUser must not be 0"] if _pod_context(pod).get("runAsUser") == 0 else []
    return found + [f"{path}.securityContext.runAsUser must not be 0" for path, c in containers(pod)
                    if _context(c).get("runAsUser") == 0]


def seccomp(pod: Pod) -> list[str]:
    """RuntimeDefault or Localhost on the pod or on every container; nothing else anywhere."""
    pod_profile = _pod_context(pod).get("seccompProfile")
    found = []
    if pod_profile is not None and pod_profile.get("type") not in SECCOMP_TYPES:
        found.append(f"spec.securityContext.seccompProfile.type {pod_profile.get('type')!r} is not allowed")
    for path, c in containers(pod):
        profile = _context(c).get("seccompProfile")
        if profile is not None and profile.get("type") not in SECCOMP_TYPES:
            found.append(f"{path}.securityContext.seccompProfile.type {profile.get('type')!r} is not allowed")
        elif profile is None and pod_profile is None:
            found.append(f"{path}.securityContext.seccompProfile must be set (on it or on the pod)")
    return found


def capabilities(pod: Pod) -> list[str]:
    """Drop ALL; add back NET_BIND_SERVICE at most (baseline's default set is wider, and covered)."""
    found = []
    for path, c in containers(pod):
        granted = _context(c).get("capabilities") or {}
        if "ALL" not in (granted.get("drop") or []):
            found.append(f"{path}.securityContext.capabilities.drop must include ALL")
        found += [f"{path}.securityContext.capabilities.add {name!r} is not allowed"
                  for name in granted.get("add") or [] if name not in RESTRICTED_ADDABLE]
    return found


RULES: tuple[Callable[[Pod], list[str]], ...] = (
    host_namespaces, host_process, privileged, host_ports, selinux, proc_mount, sysctls,
    volume_types, privilege_escalation, run_as_non_root, run_as_user, seccomp, capabilities,
)


def violations(pod: Pod, annotations: Mapping[str, str] | None = None) -> list[str]:
    """Everything in ``pod`` that the ``restricted`` profile refuses; empty when it passes."""
    found = [message for rule in RULES for message in rule(pod)]
    return found + apparmor(pod, annotations or {})


def pods_of(document: Mapping[str, Any]) -> list[tuple[str, Pod, Mapping[str, str]]]:
    """The pod specs a manifest makes, as (where, spec, pod annotations): a Pod, the template of
    a workload or a CronJob, or each component of a KServe InferenceService."""
    kind, name = document.get("kind"), (document.get("metadata") or {}).get("name")
    spec = document.get("spec") or {}
    if kind == "Pod":
        return [(f"Pod/{name}", spec, (document.get("metadata") or {}).get("annotations") or {})]
    if kind == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    if kind == "InferenceService":
        return [(f"InferenceService/{name}.{part}", spec[part], {})
                for part in ("predictor", "transformer", "explainer") if part in spec]
    if "template" in spec:
        template = spec["template"]
        return [(f"{kind}/{name}", template["spec"], (template.get("metadata") or {}).get("annotations") or {})]
    return []
