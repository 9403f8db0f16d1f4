"""Field tables for the protobuf bodies the emulator reads (see protobuf.py).

Written by hand, as data, for the kinds kubectl's `create` subcommands send
and the fields those commands fill in (plus the common fields around them).
The field numbers are Kubernetes' wire contract: they follow the API's
published messages (k8s.io/api core/v1, apps/v1, autoscaling/v2, batch/v1, rbac/v1,
policy/v1, networking/v1; k8s.io/apimachinery meta/v1, runtime, resource, intstr). No
file of that project is copied or generated here.

A field missing from a table is refused when a body carries it (with its
number and message), never skipped: adding one is one line here.

`presence` marks Go pointer fields (`*int32`, `*bool`, `*string`,
`*IntOrString`): the encoder writes them only when set, so a zero there is a
value (`replicas: 0`), not an absence.
"""

from __future__ import annotations

from dataclasses import dataclass

STRING, BYTES, INT32, INT64, BOOL = "string", "bytes", "int32", "int64", "bool"
SCALARS = frozenset({STRING, BYTES, INT32, INT64, BOOL})
# Messages with a JSON form of their own.
TIME, QUANTITY, INT_OR_STRING = "Time", "Quantity", "IntOrString"
# A kind's `status` is the server's to write: the API server ignores what a
# client sends there on create and update, and so does the reader (unread).
STATUS = "status"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    repeated: bool = False
    map_of: str | None = None  # map<string, map_of>; `type` is unused then
    presence: bool = False
    inline: bool = False  # `json:",inline"`: its fields join the parent's


def f(name: str, type_: str = STRING, *, presence: bool = False, inline: bool = False) -> Field:
    return Field(name, type_, presence=presence, inline=inline)


def many(name: str, type_: str = STRING) -> Field:
    return Field(name, type_, repeated=True)


def mapping(name: str, value: str = STRING) -> Field:
    return Field(name, "map", map_of=value)


MESSAGES: dict[str, dict[int, Field]] = {
    # --- apimachinery --------------------------------------------------------------
    "runtime.TypeMeta": {1: f("apiVersion"), 2: f("kind")},
    "resource.Quantity": {1: f("string")},
    "intstr.IntOrString": {1: f("type", INT64), 2: f("intVal", INT32), 3: f("strVal")},
    "meta.ObjectMeta": {
        1: f("name"),
        2: f("generateName"),
        3: f("namespace"),
        4: f("selfLink"),
        5: f("uid"),
        6: f("resourceVersion"),
        7: f("generation", INT64),
        8: f("creationTimestamp", TIME),
        9: f("deletionTimestamp", TIME),
        10: f("deletionGracePeriodSeconds", INT64, presence=True),
        11: mapping("labels"),
        12: mapping("annotations"),
        13: many("ownerReferences", "meta.OwnerReference"),
        14: many("finalizers"),
    },
    "meta.OwnerReference": {
        1: f("kind"),
        3: f("name"),
        4: f("uid"),
        5: f("apiVersion"),
        6: f("controller", BOOL, presence=True),
        7: f("blockOwnerDeletion", BOOL, presence=True),
    },
    "meta.LabelSelector": {
        1: mapping("matchLabels"),
        2: many("matchExpressions", "meta.LabelSelectorRequirement"),
    },
    "meta.LabelSelectorRequirement": {1: f("key"), 2: f("operator"), 3: many("values")},
    # --- core/v1 -------------------------------------------------------------------
    "core.Namespace": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "core.NamespaceSpec"),
        3: f("status", STATUS),
    },
    "core.NamespaceSpec": {1: many("finalizers")},
    "core.ConfigMap": {
        1: f("metadata", "meta.ObjectMeta"),
        2: mapping("data"),
        3: mapping("binaryData", BYTES),
        4: f("immutable", BOOL, presence=True),
    },
    "core.Secret": {
        1: f("metadata", "meta.ObjectMeta"),
        2: mapping("data", BYTES),
        3: f("type"),
        4: mapping("stringData"),
        5: f("immutable", BOOL, presence=True),
    },
    "core.ServiceAccount": {
        1: f("metadata", "meta.ObjectMeta"),
        2: many("secrets", "core.ObjectReference"),
        3: many("imagePullSecrets", "core.LocalObjectReference"),
        4: f("automountServiceAccountToken", BOOL, presence=True),
    },
    "core.ObjectReference": {
        1: f("kind"),
        2: f("namespace"),
        3: f("name"),
        4: f("uid"),
        5: f("apiVersion"),
        6: f("resourceVersion"),
        7: f("fieldPath"),
    },
    "core.LocalObjectReference": {1: f("name")},
    "core.Service": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "core.ServiceSpec"),
        3: f("status", STATUS),
    },
    "core.ServiceSpec": {
        1: many("ports", "core.ServicePort"),
        2: mapping("selector"),
        3: f("clusterIP"),
        4: f("type"),
        5: many("externalIPs"),
        7: f("sessionAffinity"),
        8: f("loadBalancerIP"),
        9: many("loadBalancerSourceRanges"),
        10: f("externalName"),
        11: f("externalTrafficPolicy"),
        12: f("healthCheckNodePort", INT32),
        13: f("publishNotReadyAddresses", BOOL),
        17: f("ipFamilyPolicy", presence=True),
        18: many("clusterIPs"),
        19: many("ipFamilies"),
        20: f("allocateLoadBalancerNodePorts", BOOL, presence=True),
        21: f("loadBalancerClass", presence=True),
        22: f("internalTrafficPolicy", presence=True),
        23: f("trafficDistribution", presence=True),
    },
    "core.ServicePort": {
        1: f("name"),
        2: f("protocol"),
        3: f("port", INT32),
        4: f("targetPort", INT_OR_STRING),
        5: f("nodePort", INT32),
        6: f("appProtocol", presence=True),
    },
    "core.ResourceQuota": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "core.ResourceQuotaSpec"),
        3: f("status", STATUS),
    },
    "core.ResourceQuotaSpec": {1: mapping("hard", QUANTITY), 2: many("scopes")},
    "core.PodTemplateSpec": {1: f("metadata", "meta.ObjectMeta"), 2: f("spec", "core.PodSpec")},
    "core.PodSpec": {
        2: many("containers", "core.Container"),
        3: f("restartPolicy"),
        4: f("terminationGracePeriodSeconds", INT64, presence=True),
        5: f("activeDeadlineSeconds", INT64, presence=True),
        6: f("dnsPolicy"),
        7: mapping("nodeSelector"),
        8: f("serviceAccountName"),
        9: f("serviceAccount"),
        10: f("nodeName"),
        11: f("hostNetwork", BOOL),
        15: many("imagePullSecrets", "core.LocalObjectReference"),
        16: f("hostname"),
        17: f("subdomain"),
        19: f("schedulerName"),
        20: many("initContainers", "core.Container"),
        21: f("automountServiceAccountToken", BOOL, presence=True),
        24: f("priorityClassName"),
        25: f("priority", INT32, presence=True),
    },
    "core.Container": {
        1: f("name"),
        2: f("image"),
        3: many("command"),
        4: many("args"),
        5: f("workingDir"),
        6: many("ports", "core.ContainerPort"),
        7: many("env", "core.EnvVar"),
        8: f("resources", "core.ResourceRequirements"),
        13: f("terminationMessagePath"),
        14: f("imagePullPolicy"),
        16: f("stdin", BOOL),
        17: f("stdinOnce", BOOL),
        18: f("tty", BOOL),
        20: f("terminationMessagePolicy"),
    },
    "core.ContainerPort": {
        1: f("name"),
        2: f("hostPort", INT32),
        3: f("containerPort", INT32),
        4: f("protocol"),
        5: f("hostIP"),
    },
    "core.EnvVar": {1: f("name"), 2: f("value")},
    "core.ResourceRequirements": {1: mapping("limits", QUANTITY), 2: mapping("requests", QUANTITY)},
    # --- apps/v1 -------------------------------------------------------------------
    "apps.Deployment": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "apps.DeploymentSpec"),
        3: f("status", STATUS),
    },
    "apps.DeploymentSpec": {
        1: f("replicas", INT32, presence=True),
        2: f("selector", "meta.LabelSelector"),
        3: f("template", "core.PodTemplateSpec"),
        4: f("strategy", "apps.DeploymentStrategy"),
        5: f("minReadySeconds", INT32),
        6: f("revisionHistoryLimit", INT32, presence=True),
        7: f("paused", BOOL),
        9: f("progressDeadlineSeconds", INT32, presence=True),
    },
    "apps.DeploymentStrategy": {1: f("type"), 2: f("rollingUpdate", "apps.RollingUpdate")},
    "apps.RollingUpdate": {
        1: f("maxUnavailable", INT_OR_STRING, presence=True),
        2: f("maxSurge", INT_OR_STRING, presence=True),
    },
    # --- batch/v1 ------------------------------------------------------------------
    "batch.Job": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "batch.JobSpec"),
        3: f("status", STATUS),
    },
    "batch.JobSpec": {
        1: f("parallelism", INT32, presence=True),
        2: f("completions", INT32, presence=True),
        3: f("activeDeadlineSeconds", INT64, presence=True),
        4: f("selector", "meta.LabelSelector"),
        5: f("manualSelector", BOOL, presence=True),
        6: f("template", "core.PodTemplateSpec"),
        7: f("backoffLimit", INT32, presence=True),
        8: f("ttlSecondsAfterFinished", INT32, presence=True),
        9: f("completionMode", presence=True),
        10: f("suspend", BOOL, presence=True),
        14: f("podReplacementPolicy", presence=True),
        15: f("managedBy", presence=True),
    },
    "batch.CronJob": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "batch.CronJobSpec"),
        3: f("status", STATUS),
    },
    "batch.CronJobSpec": {
        1: f("schedule"),
        2: f("startingDeadlineSeconds", INT64, presence=True),
        3: f("concurrencyPolicy"),
        4: f("suspend", BOOL, presence=True),
        5: f("jobTemplate", "batch.JobTemplateSpec"),
        6: f("successfulJobsHistoryLimit", INT32, presence=True),
        7: f("failedJobsHistoryLimit", INT32, presence=True),
        8: f("timeZone", presence=True),
    },
    "batch.JobTemplateSpec": {1: f("metadata", "meta.ObjectMeta"), 2: f("spec", "batch.JobSpec")},
    # --- autoscaling/v2 ------------------------------------------------------------
    "autoscaling.HorizontalPodAutoscaler": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "autoscaling.HorizontalPodAutoscalerSpec"),
        3: f("status", STATUS),
    },
    "autoscaling.HorizontalPodAutoscalerSpec": {
        1: f("scaleTargetRef", "autoscaling.CrossVersionObjectReference"),
        2: f("minReplicas", INT32, presence=True),
        3: f("maxReplicas", INT32),
        4: many("metrics", "autoscaling.MetricSpec"),
    },
    "autoscaling.CrossVersionObjectReference": {1: f("kind"), 2: f("name"), 3: f("apiVersion")},
    "autoscaling.MetricSpec": {1: f("type"), 4: f("resource", "autoscaling.ResourceMetricSource")},
    "autoscaling.ResourceMetricSource": {1: f("name"), 2: f("target", "autoscaling.MetricTarget")},
    "autoscaling.MetricTarget": {
        1: f("type"),
        2: f("value", QUANTITY, presence=True),
        3: f("averageValue", QUANTITY, presence=True),
        4: f("averageUtilization", INT32, presence=True),
    },
    # --- rbac/v1 -------------------------------------------------------------------
    "rbac.Role": {1: f("metadata", "meta.ObjectMeta"), 2: many("rules", "rbac.PolicyRule")},
    "rbac.ClusterRole": {
        1: f("metadata", "meta.ObjectMeta"),
        2: many("rules", "rbac.PolicyRule"),
        3: f("aggregationRule", "rbac.AggregationRule"),
    },
    "rbac.AggregationRule": {1: many("clusterRoleSelectors", "meta.LabelSelector")},
    "rbac.PolicyRule": {
        1: many("verbs"),
        2: many("apiGroups"),
        3: many("resources"),
        4: many("resourceNames"),
        5: many("nonResourceURLs"),
    },
    "rbac.RoleBinding": {
        1: f("metadata", "meta.ObjectMeta"),
        2: many("subjects", "rbac.Subject"),
        3: f("roleRef", "rbac.RoleRef"),
    },
    "rbac.Subject": {1: f("kind"), 2: f("apiGroup"), 3: f("name"), 4: f("namespace")},
    "rbac.RoleRef": {1: f("apiGroup"), 2: f("kind"), 3: f("name")},
    # --- policy/v1 -----------------------------------------------------------------
    "policy.PodDisruptionBudget": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "policy.PodDisruptionBudgetSpec"),
        3: f("status", STATUS),
    },
    "policy.PodDisruptionBudgetSpec": {
        1: f("minAvailable", INT_OR_STRING, presence=True),
        2: f("selector", "meta.LabelSelector"),
        3: f("maxUnavailable", INT_OR_STRING, presence=True),
        4: f("unhealthyPodEvictionPolicy", presence=True),
    },
    # --- networking/v1 -------------------------------------------------------------
    "networking.Ingress": {
        1: f("metadata", "meta.ObjectMeta"),
        2: f("spec", "networking.IngressSpec"),
        3: f("status", STATUS),
    },
    "networking.IngressSpec": {
        1: f("defaultBackend", "networking.IngressBackend"),
        2: many("tls", "networking.IngressTLS"),
        3: many("rules", "networking.IngressRule"),
        4: f("ingressClassName", presence=True),
    },
    "networking.IngressTLS": {1: many("hosts"), 2: f("secretName")},
    "networking.IngressRule": {
        1: f("host"),
        2: f("ingressRuleValue", "networking.IngressRuleValue", inline=True),
    },
    "networking.IngressRuleValue": {1: f("http", "networking.HTTPIngressRuleValue")},
    "networking.HTTPIngressRuleValue": {1: many("paths", "networking.HTTPIngressPath")},
    "networking.HTTPIngressPath": {
        1: f("path"),
        2: f("backend", "networking.IngressBackend"),
        3: f("pathType", presence=True),
    },
    "networking.IngressBackend": {4: f("service", "networking.IngressServiceBackend")},
    "networking.IngressServiceBackend": {1: f("name"), 2: f("port", "networking.ServicePort")},
    "networking.ServicePort": {1: f("name"), 2: f("number", INT32)},
}

# (apiVersion, kind) of the envelope -> the message of its `raw` bytes.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "core.Namespace",
    ("v1", "ConfigMap"): "core.ConfigMap",
    ("v1", "Secret"): "core.Secret",
    ("v1", "ServiceAccount"): "core.ServiceAccount",
    ("v1", "Service"): "core.Service",
    ("v1", "ResourceQuota"): "core.ResourceQuota",
    ("apps/v1", "Deployment"): "apps.Deployment",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "autoscaling.HorizontalPodAutoscaler",
    ("batch/v1", "Job"): "batch.Job",
    ("batch/v1", "CronJob"): "batch.CronJob",
    ("rbac.authorization.k8s.io/v1", "Role"): "rbac.Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "rbac.ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rbac.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "rbac.RoleBinding",
    ("policy/v1", "PodDisruptionBudget"): "policy.PodDisruptionBudget",
    ("networking.k8s.io/v1", "Ingress"): "networking.Ingress",
}
