"""What a kustomization reads, and what it may not. Pure: a file's bytes in, checked references out.

Before kustomize runs, the renderer reads every kustomization it will build
and lists the paths it names (resources, components, patches, generator
files...). Each must be a relative path that stays inside the repository:
a URL or `git@` address (a remote base), an absolute path, or `..` above the
repository root is refused, naming the kustomization and the field. Only the
listed paths are written where kustomize can see them, so a reference this
module does not know about fails closed ("no such file") rather than open.

Plugins are refused: kustomize is never given `--enable-exec` or
`--enable-alpha-plugins`, and a `generators`, `transformers` or `validators`
entry must be a builtin plugin's configuration (apiVersion `builtin`, no
KRM function annotation). Helm charts inflated by kustomize need
`--enable-helm` and the network: refused too, in favour of the helm renderer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from services.renderer.manifests import RenderError, load_yaml
from services.wiring.git import RepoPath

# A path may name a file or a directory (a base, a component), or only a file.
Target = Literal["any", "file"]

# Fields whose entries are plugin configurations (paths or inline YAML).
PLUGIN_FIELDS = ("generators", "transformers", "validators")
HELM_FIELDS = ("helmCharts", "helmChartInflationGenerator", "helmGlobals")
FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")

# go-getter and kustomize's remote forms: scheme://, scp-like, ?ref=, host/path//subdir.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_SCP_LIKE = re.compile(r"^[^/:]+@[^/:]+:")
_HOSTED = re.compile(r"^(github\.com|gitlab\.com|bitbucket\.org)(/|$)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Reference:
    """A path a kustomization names, checked to stay in the repository."""

    field: str
    path: RepoPath
    target: Target


@dataclass(frozen=True, slots=True)
class PluginEntry:
    """A `generators`/`transformers`/`validators` entry: a file to check, or inline YAML."""

    field: str
    path: RepoPath | None = None
    inline: str = ""


@dataclass(frozen=True, slots=True)
class Kustomization:
    references: tuple[Reference, ...]
    plugins: tuple[PluginEntry, ...]


def is_remote(value: str) -> bool:
    """True for what kustomize would fetch over the network."""
    return bool(
        _SCHEME.match(value)
        or _SCP_LIKE.match(value)
        or _HOSTED.match(value)
        or "?ref=" in value
        or "//" in value
    )


def resolve(directory: RepoPath, value: str, *, file: str, field: str) -> RepoPath:
    """`value`, written in the kustomization at `file` in `directory`, as a repository path.

    Raises RenderError naming the file and the field for a remote, absolute
    or escaping path.
    """
    if not isinstance(value, str) or not value.strip():
        raise RenderError(file, None, f"{field}: expected a path, found {value!r}")
    if is_remote(value):
        raise RenderError(
            file,
            None,
            f"{field}: remote base {value!r} refused: everything a kustomization "
            "loads must be inside the repository",
        )
    if value.startswith("/"):
        raise RenderError(
            file, None, f"{field}: absolute path {value!r} refused: it leaves the repository"
        )
    parts = list(directory.parts)
    for segment in value.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise RenderError(
                    file,
                    None,
                    f"{field}: {value!r} leaves the repository (too many '..')",
                )
            parts.pop()
        else:
            parts.append(segment)
    return RepoPath("/".join(parts) or ".")


def read_kustomization(file: RepoPath, data: bytes) -> Kustomization:
    """The paths the kustomization at `file` names, and its plugin entries.

    Raises RenderError naming the file (and field) for anything refused.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RenderError(file, None, f"not UTF-8 text (byte {exc.start})") from None
    documents = load_yaml(file, text)
    if len(documents) != 1 or not isinstance(documents[0].value, dict):
        raise RenderError(file, None, "a kustomization must be one YAML mapping")
    body: dict[str, Any] = documents[0].value
    directory = file.parent
    references: list[Reference] = []
    plugins: list[PluginEntry] = []

    def add(field: str, value: Any, target: Target) -> None:
        references.append(
            Reference(field, resolve(directory, value, file=file, field=field), target)
        )

    for field in HELM_FIELDS:
        if field in body:
            raise RenderError(
                file,
                None,
                f"{field}: Helm charts inside a kustomization are refused (they need "
                "--enable-helm and the network); use the helm renderer",
            )
    for field in ("resources", "bases", "components"):
        for index, value in enumerate(_listed(body, field, file)):
            add(f"{field}[{index}]", value, "any")
    for field in ("crds", "configurations"):
        for index, value in enumerate(_listed(body, field, file)):
            add(f"{field}[{index}]", value, "file")
    for index, value in enumerate(_listed(body, "patchesStrategicMerge", file)):
        # An entry is a path, or the patch itself written inline.
        if isinstance(value, str) and "\n" not in value and ":" not in value:
            add(f"patchesStrategicMerge[{index}]", value, "file")
    for field in ("patches", "patchesJson6902", "replacements"):
        for index, entry in enumerate(_listed(body, field, file)):
            if isinstance(entry, dict) and "path" in entry:
                add(f"{field}[{index}].path", entry["path"], "file")
    openapi = body.get("openapi")
    if isinstance(openapi, dict) and "path" in openapi:
        add("openapi.path", openapi["path"], "file")
    for field in ("configMapGenerator", "secretGenerator"):
        for index, generator in enumerate(_listed(body, field, file)):
            if not isinstance(generator, dict):
                continue
            for key in ("files", "envs"):
                for number, value in enumerate(_listed(generator, key, file)):
                    # `files` entries may be `key=path`.
                    path = value.split("=", 1)[-1] if isinstance(value, str) else value
                    add(f"{field}[{index}].{key}[{number}]", path, "file")
            if "env" in generator:
                add(f"{field}[{index}].env", generator["env"], "file")
    for field in PLUGIN_FIELDS:
        for index, value in enumerate(_listed(body, field, file)):
            name = f"{field}[{index}]"
            if isinstance(value, str) and "\n" not in value:
                plugins.append(
                    PluginEntry(name, path=resolve(directory, value, file=file, field=name))
                )
            elif isinstance(value, str):
                plugins.append(PluginEntry(name, inline=value))
            else:
                raise RenderError(file, None, f"{name}: expected a path or inline YAML")
    return Kustomization(tuple(references), tuple(plugins))


def check_plugin_configs(file: str, field: str, text: str) -> None:
    """Refuse plugin configurations (from `file`, for `field`) that are not builtin plugins."""
    for document in load_yaml(file, text):
        config = document.value
        if not isinstance(config, dict):
            raise RenderError(file, document.line, f"{field}: a plugin config must be a mapping")
        api_version = config.get("apiVersion")
        kind = config.get("kind", "?")
        annotations = (config.get("metadata") or {}).get("annotations") or {}
        if any(name in annotations for name in FUNCTION_ANNOTATIONS):
            raise RenderError(
                file,
                document.line,
                f"{field}: {kind} is a KRM function (exec or container plugin): "
                "plugins are refused",
            )
        if api_version != "builtin":
            raise RenderError(
                file,
                document.line,
                f"{field}: plugin {kind} ({api_version}) refused: only kustomize's "
                "builtin plugins (apiVersion: builtin) may be configured",
            )


def _listed(body: dict[str, Any], field: str, file: str) -> list[Any]:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise RenderError(file, None, f"{field}: expected a list")
    return value
