#!/usr/bin/env python3
"""Checks deploy/kubernetes/*.yaml (or the files given) offline: every document against
the Kubernetes schemas of each version from 1.30 on (kubernetes-validate, strict: no
unknown fields), then what a schema cannot express and the API server or the Pod
Security admission enforces:

- a container with procMount: Unmasked needs hostUsers: false in its pod (1.30+);
- a pod with hostPath volumes or procMount: Unmasked must be in a Namespace of this
  file whose pod-security.kubernetes.io/enforce level is privileged;
- every container has resource requests, the daemon a liveness probe, and the pod a
  PriorityClass defined in the file.

Prints one line per document and exits 1 on the first file with a problem.
Usage: check.py [FILE...]   (run with the venv test.sh makes: target/k8s-venv)
"""
import glob
import os
import sys

import kubernetes_validate
import yaml

VERSIONS = ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"]


def pod_specs(doc):
    """The pod spec of a workload document, if it has one."""
    spec = doc.get("spec") or {}
    if doc.get("kind") == "Pod":
        return spec
    template = spec.get("template") or {}
    return template.get("spec")


def rules(docs):
    problems = []
    namespaces = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Namespace"}
    priority_classes = {d["metadata"]["name"] for d in docs if d.get("kind") == "PriorityClass"}
    for doc in docs:
        pod = pod_specs(doc)
        if pod is None:
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        containers = pod.get("initContainers", []) + pod.get("containers", [])
        unmasked = [c["name"] for c in containers
                    if (c.get("securityContext") or {}).get("procMount") == "Unmasked"]
        if unmasked and pod.get("hostUsers") is not False:
            problems.append(f"{name}: procMount: Unmasked ({', '.join(unmasked)}) needs "
                            "hostUsers: false in the pod (the API server refuses it since 1.30)")
        host_path = any("hostPath" in v for v in pod.get("volumes", []))
        if unmasked or host_path:
            namespace = namespaces.get(doc["metadata"].get("namespace", "default"))
            labels = (namespace or {}).get("metadata", {}).get("labels", {})
            level = labels.get("pod-security.kubernetes.io/enforce")
            if level != "privileged":
                problems.append(f"{name}: hostPath volumes and procMount: Unmasked are allowed "
                                f"only at the privileged Pod Security level; its namespace "
                                f"enforces {level!r}")
        for c in containers:
            if not (c.get("resources") or {}).get("requests"):
                problems.append(f"{name}: container {c['name']} has no resource requests")
        if not all(c.get("livenessProbe") for c in pod.get("containers", [])):
            problems.append(f"{name}: a container has no livenessProbe")
        if pod.get("priorityClassName") not in priority_classes:
            problems.append(f"{name}: priorityClassName {pod.get('priorityClassName')!r} "
                            "is not defined in the file")
    return problems


def check(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ok = True
    for doc in docs:
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                print(f"{path}: {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                      f"{'.'.join(str(p) for p in e.path)}: {e.message}")
                ok = False
                break
        else:
            print(f"{path}: {doc['kind']}/{doc['metadata']['name']}: valid for Kubernetes "
                  f"{VERSIONS[0]} to {VERSIONS[-1]}")
    for problem in rules(docs):
        print(f"{path}: {problem}")
        ok = False
    return ok


def main(paths):
    if not paths:
        here = os.path.dirname(os.path.abspath(__file__))
        paths = sorted(glob.glob(os.path.join(here, "*.yaml")))
    if not all([check(p) for p in paths]):
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
