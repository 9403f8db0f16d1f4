"""Plain YAML/JSON manifests -> canonical resources. Pure: bytes in, dicts out.

Given the files of an app directory ({path: bytes}), every document of
every file becomes a resource: multi-document YAML, empty documents skipped,
`kind: List` expanded. Each must have apiVersion, kind and metadata.name;
namespaced kinds without a namespace get the app's; two resources with the
same apiVersion, kind, namespace and name are an error. The result does not
depend on the order the files come in.

The output of kustomize, helm and jsonnet goes through the same checks and
canonical order (`render_output`, `render_values`), so a bundle is canonical
whichever renderer made it.

YAML is read by one loader, which refuses a document whose aliases would
expand it far beyond its text (a "billion laughs") before building anything.

Every error is a RenderError naming the file and, where there is one, the
1-based line.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from events.bundle import BUILTIN_GROUPS, Resource, sort_key

# Kinds that live outside namespaces. A CRD in the same bundle adds its kind
# when its scope is Cluster.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "IngressClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
    }
)


class RenderError(Exception):
    """A render that cannot succeed, and where in the repository it went wrong."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = str(file)
        self.line = line
        self.message = message
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class SourcedResource:
    """A rendered resource and the document it came from."""

    resource: Resource
    file: str
    line: int | None

    @property
    def source(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


# --- loading: the one place YAML is parsed --------------------------------------------

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):
    """SafeLoader with Kubernetes' reading of YAML.

    Timestamps stay strings (Kubernetes' YAML-to-JSON keeps `2024-01-01` as
    text), and a key given twice in one mapping is an error (kubectl refuses
    it; PyYAML would silently keep the last).
    """

    def get_node(self):
        # The composed graph shares an aliased node instead of copying it, so
        # composing a billion laughs is cheap; constructing and copying it is
        # not. Its expanded size is measured on the graph, before anything is
        # built from it.
        node = super().get_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                    key_node, yaml.ScalarNode
                ):
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor(
    "tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str
)


# How much larger than its text aliases may make a document: weight is one
# per node plus the length of every scalar, counted once per place it appears.
# Merge keys (`<<: *base`) and the odd shared anchor stay far below it.
MAX_ALIAS_EXPANSION = 10_000_000


class AliasBomb(yaml.YAMLError):
    """A document whose aliases would expand beyond MAX_ALIAS_EXPANSION, or refer to themselves."""

    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        self.problem_mark = mark
        self.message = message
        super().__init__(message)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _weight(node: yaml.Node) -> int:
    return 1 + (len(node.value) if isinstance(node, yaml.ScalarNode) else 0)


def _check_expansion(root: yaml.Node) -> None:
    """Raise AliasBomb if expanding the aliases of `root` would exceed MAX_ALIAS_EXPANSION.

    Linear in the composed graph (each distinct node is visited once; the
    expanded weight is summed per node with Python's unbounded ints), so the
    check costs no more than the text it reads. A node that contains itself
    (`&a [*a]`) is refused too: it expands without end.
    """
    expanded: dict[int, int] = {}
    distinct = 0
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            in_progress.discard(key)
            expanded[key] = _weight(node) + sum(expanded[id(c)] for c in _children(node))
            distinct += _weight(node)
            continue
        if key in expanded:
            continue
        if key in in_progress:
            raise AliasBomb(node.start_mark, "an alias refers to a node that contains it")
        in_progress.add(key)
        stack.append((node, True))
        for child in reversed(_children(node)):
            if id(child) in in_progress:
                raise AliasBomb(child.start_mark, "an alias refers to a node that contains it")
            if id(child) not in expanded:
                stack.append((child, False))
    growth = expanded[id(root)] - distinct
    if growth > MAX_ALIAS_EXPANSION:
        raise AliasBomb(
            root.start_mark,
            f"aliases expand this document by more than {MAX_ALIAS_EXPANSION} "
            "(nodes plus scalar characters): refused as a YAML alias bomb",
        )


@dataclass(frozen=True, slots=True)
class _Document:
    line: int
    value: Any
    item_lines: tuple[int, ...] = ()


def load_yaml(file: str, text: str) -> list[_Document]:
    """Every non-empty document of a YAML stream, with its 1-based first line.

    For a mapping with an `items` sequence (a List), also the line of each item.
    """
    loader = _Loader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            value = loader.construct_document(node)
            if value is None:
                continue
            documents.append(_Document(node.start_mark.line + 1, value, _item_lines(node)))
    except AliasBomb as exc:
        mark = exc.problem_mark
        raise RenderError(file, mark.line + 1 if mark else None, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        context = ""
        if exc.context and exc.problem:
            # "while scanning a quoted scalar" + where it began: an unclosed
            # quote is noticed far below the line that needs the fix.
            started = exc.context_mark
            at = f" that starts at line {started.line + 1}" if started else ""
            context = f" ({exc.context}{at})"
        raise RenderError(
            file, mark.line + 1 if mark else None, f"invalid YAML: {problem}{context}"
        ) from None
    except yaml.YAMLError as exc:
        raise RenderError(file, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return documents


def _item_lines(node: yaml.Node) -> tuple[int, ...]:
    if not isinstance(node, yaml.MappingNode):
        return ()
    for key_node, value_node in node.value:
        if (
            isinstance(key_node, yaml.ScalarNode)
            and key_node.value == "items"
            and isinstance(value_node, yaml.SequenceNode)
        ):
            return tuple(item.start_mark.line + 1 for item in value_node.value)
    return ()


def load_json(file: str, text: str) -> list[_Document]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise RenderError(file, None, f"invalid JSON: duplicate key {key!r}")
            out[key] = value
        return out

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise RenderError(file, exc.lineno, f"invalid JSON: {exc.msg}") from None
    return [] if value is None else [_Document(1, value)]


def load_documents(file: str, data: bytes) -> list[_Document]:
    """The documents of one manifest file, by its suffix (.json, else YAML)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RenderError(file, None, f"not UTF-8 text (byte {exc.start})") from None
    if file.lower().endswith(".json"):
        return load_json(file, text)
    return load_yaml(file, text)


# --- from documents to resources -------------------------------------------------------


def _plain(value: Any, file: str, line: int | None) -> Any:
    """`value` as JSON values only, as Kubernetes would read it."""
    if isinstance(value, dict):
        return {_key(k): _plain(v, file, line) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, file, line) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise RenderError(file, line, f"unsupported YAML value of type {type(value).__name__}")


def _key(key: Any) -> str:
    # JSON keys are strings; YAML's are not always (`80: http`, `on: x`).
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def _resources_of(file: str, document: _Document) -> list[tuple[Resource, int | None]]:
    value = document.value
    if not isinstance(value, dict):
        raise RenderError(
            file,
            document.line,
            f"a manifest must be a mapping, this document is a {type(value).__name__}",
        )
    kind = value.get("kind")
    # kubectl reads any `*List` with items as a list of objects, not just `List`.
    if isinstance(kind, str) and kind.endswith("List") and (kind == "List" or "items" in value):
        items = value.get("items") or []
        if not isinstance(items, list):
            raise RenderError(file, document.line, f"{kind}: items must be a list")
        out = []
        for index, item in enumerate(items):
            line = document.item_lines[index] if index < len(document.item_lines) else document.line
            if not isinstance(item, dict):
                raise RenderError(file, line, f"{kind} item {index} is not a mapping")
            out.append((item, line))
        return out
    return [(value, document.line)]


def _checked(resource: Resource, file: str, line: int | None) -> Resource:
    for field in ("apiVersion", "kind"):
        value = resource.get(field)
        if not isinstance(value, str) or not value:
            raise RenderError(file, line, f"missing {field}")
    kind = resource["kind"]
    metadata = resource.get("metadata")
    if not isinstance(metadata, dict):
        raise RenderError(file, line, f"{kind}: missing metadata")
    name = metadata.get("name")
    if name in (None, "") and _is_hook(metadata):
        # A hook is created afresh at each sync, the server picking its name
        # (Argo CD's and Helm's hooks do this): it needs no name of its own.
        name = metadata.get("generateName")
        if not isinstance(name, str) or not name:
            raise RenderError(file, line, f"{kind}: missing metadata.name or generateName")
    if not isinstance(name, str) or not name:
        what = "missing metadata.name" if name in (None, "") else "metadata.name is not a string"
        if name in (None, "") and metadata.get("generateName"):
            what += " (generateName is for hooks only: argocd.argoproj.io/hook or helm.sh/hook)"
        raise RenderError(file, line, f"{kind}: {what}")
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise RenderError(file, line, f"{kind} {name}: metadata.namespace is not a string")
    return _plain(resource, file, line)


HOOK_ANNOTATIONS = ("argocd.argoproj.io/hook", "helm.sh/hook")


def _is_hook(metadata: dict[str, Any]) -> bool:
    annotations = metadata.get("annotations")
    return isinstance(annotations, dict) and any(a in annotations for a in HOOK_ANNOTATIONS)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def cluster_scoped_custom_kinds(resources: list[Resource]) -> frozenset[tuple[str, str]]:
    """(group, kind) of every CRD in the bundle whose scope is Cluster."""
    kinds = set()
    for resource in resources:
        if (
            resource["kind"] != "CustomResourceDefinition"
            or _group(resource["apiVersion"]) != "apiextensions.k8s.io"
        ):
            continue
        spec = resource.get("spec") or {}
        names = spec.get("names") or {}
        if spec.get("scope") == "Cluster" and names.get("kind") and spec.get("group"):
            kinds.add((str(spec["group"]), str(names["kind"])))
    return frozenset(kinds)


def custom_kinds_defined(resources: list[Resource]) -> frozenset[tuple[str, str]]:
    """(group, kind) of every CRD in the bundle, whatever its scope."""
    kinds = set()
    for resource in resources:
        if (
            resource["kind"] != "CustomResourceDefinition"
            or _group(resource["apiVersion"]) != "apiextensions.k8s.io"
        ):
            continue
        spec = resource.get("spec") or {}
        names = spec.get("names") or {}
        if names.get("kind") and spec.get("group"):
            kinds.add((str(spec["group"]), str(names["kind"])))
    return frozenset(kinds)


def render(files: Mapping[str, bytes], *, namespace: str) -> list[SourcedResource]:
    """Every resource of the app's files, canonical and in canonical order.

    Raises RenderError at the first problem, files taken in path order so the
    same input always names the same one.
    """
    return _canonical(_found_in_files(files), namespace=namespace)


def _found_in_files(files: Mapping[str, bytes]) -> list[tuple[Resource, str, int | None]]:
    found: list[tuple[Resource, str, int | None]] = []
    for file in sorted(files):
        for document in load_documents(file, files[file]):
            for resource, line in _resources_of(file, document):
                found.append((_checked(resource, file, line), file, line))
    return found


def render_output(output: bytes, *, tool: str, entry: str, namespace: str) -> list[SourcedResource]:
    """The resources of a tool's YAML output (kustomize, helm), canonical as plain files are.

    `entry` is the repository file the tool read first (the kustomization,
    the chart): every resource names it as its source, and a RenderError names
    it with the line of the tool's output at fault in its message.
    """
    label = f"{tool} output"
    try:
        documents = load_documents(label, output)
        found: list[tuple[Resource, str, int | None]] = []
        for document in documents:
            for resource, line in _resources_of(label, document):
                found.append((_checked(resource, label, line), entry, None))
        return _canonical(found, namespace=namespace)
    except RenderError as exc:
        if exc.file != label:
            raise
        where = f" at line {exc.line}" if exc.line is not None else ""
        raise RenderError(entry, None, f"in the {label}{where}: {exc.message}") from None


def render_values(values: list[Any], *, entry: str, namespace: str) -> list[SourcedResource]:
    """Resources given as JSON values (jsonnet's output), canonical as plain files are.

    Each value is a resource or a `kind: List`; every resource names `entry`
    as its source, and so does a RenderError.
    """
    return _canonical(_found_in_values(values, entry=entry), namespace=namespace)


def render_sources(
    files: Mapping[str, bytes], outputs: Mapping[str, list[Any]], *, namespace: str
) -> list[SourcedResource]:
    """Plain files and JSON values ({entry: values}) together, as one canonical bundle.

    One bundle, so a resource defined both in a file and by an entry is an
    error naming both, and a CRD in either scopes its kind in both.
    """
    found = _found_in_files(files)
    for entry in sorted(outputs):
        found.extend(_found_in_values(outputs[entry], entry=entry))
    return _canonical(found, namespace=namespace)


def _found_in_values(values: list[Any], *, entry: str) -> list[tuple[Resource, str, int | None]]:
    found: list[tuple[Resource, str, int | None]] = []
    for index, value in enumerate(values):
        document = _Document(1, value)
        try:
            for resource, _ in _resources_of(entry, document):
                found.append((_checked(resource, entry, None), entry, None))
        except RenderError as exc:
            raise RenderError(entry, None, f"output item {index}: {exc.message}") from None
    return found


def combined(*parts: list[SourcedResource], namespace: str) -> list[SourcedResource]:
    """The resources of several renders of one app (plain files and kustomizations), canonical.

    Raises RenderError naming both sources of a resource defined twice.
    """
    return _canonical(
        [(item.resource, item.file, item.line) for part in parts for item in part],
        namespace=namespace,
    )


def _canonical(
    found: list[tuple[Resource, str, int | None]], *, namespace: str
) -> list[SourcedResource]:
    custom_cluster_kinds = cluster_scoped_custom_kinds([r for r, _, _ in found])
    custom_kinds = custom_kinds_defined([r for r, _, _ in found])
    rendered: list[SourcedResource] = []
    seen: dict[tuple[str, str, str, str], SourcedResource] = {}
    for resource, file, line in found:
        metadata = resource["metadata"]
        kind = (_group(resource["apiVersion"]), resource["kind"])
        cluster_scoped = resource["kind"] in CLUSTER_SCOPED_KINDS or kind in custom_cluster_kinds
        if cluster_scoped:
            # A namespace on a cluster-scoped object means nothing to the API
            # server; dropping it keeps the object's identity (and the prune
            # inventory) what the server will report.
            metadata.pop("namespace", None)
        elif kind[0] not in BUILTIN_GROUPS and kind not in custom_kinds:
            # A custom kind whose CRD is not in the bundle: only the cluster's
            # discovery knows its scope, so the planner places it (prepare_all),
            # never giving a cluster-scoped kind the app's namespace.
            pass
        elif not metadata.get("namespace"):
            metadata["namespace"] = namespace
        item = SourcedResource(resource, str(file), line)
        key = sort_key(resource)
        if key in seen:
            first = seen[key]
            raise RenderError(
                file,
                line,
                f"{_describe(key)} is defined twice: in {first.source} and in {item.source}",
            )
        seen[key] = item
        rendered.append(item)
    return sorted(rendered, key=lambda r: (sort_key(r.resource), r.source))


def _describe(key: tuple[str, str, str, str]) -> str:
    api_version, kind, namespace, name = key
    where = f"{namespace}/" if namespace else ""
    return f"{kind} {where}{name} ({api_version})"
