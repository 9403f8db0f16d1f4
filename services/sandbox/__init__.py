"""Wake sandbox: a Kubernetes API emulator for tests and the demo, not a real cluster.

Own code on aiohttp, not kmock 0.8: its store lacks resourceVersion, selectors and managedFields.

It serves over plain HTTP what Wake's production client code uses
(kubernetes_asyncio, and kubectl through a kubeconfig): discovery (classic and
aggregated v2) and a minimal OpenAPI v3 for kubectl's validation handshake;
get, list (label and field selectors, limit/continue), watch, create, update,
delete, JSON merge / strategic merge / JSON patch; server-side apply with
field ownership, conflicts and force; dry runs; the status and scale
subresources; CRDs that make their kinds servable; protobuf request bodies
of the kinds kubectl's `create` subcommands send. Nothing runs: no
controllers (unless `ready_workloads`: then rollouts and Jobs complete, Pods
run and claims bind when written), no defaulting, no schema validation, no
admission, no auth.

- `discovery.py`  the catalogue of kinds and the discovery documents
- `openapi.py`    the OpenAPI v3 documents kubectl asks for before it writes
- `fieldsets.py`  field paths, list merge keys, the `fieldsV1` format
- `apply.py`      server-side apply and field ownership (pure)
- `patching.py`   merge, strategic merge and JSON patches (pure)
- `selectors.py`  label and field selectors (pure)
- `protobuf.py`   protobuf request bodies to JSON objects (pure), with
                  `protobuf_schema.py`, its hand-written field tables
- `workloads.py`  the status controllers would write, for ready workloads (pure)
- `store.py`      objects, resourceVersion, watch history, CRD side effects
- `server.py`     the aiohttp routes
- `emulator.py`   `Sandbox`: start, stop, kubeconfig, test helpers
"""

from services.sandbox.emulator import Sandbox

__all__ = ["Sandbox"]
