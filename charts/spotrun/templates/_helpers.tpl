{{/* Chart name (nameOverride wins). */}}
{{- define "spotrun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or just the release name when it already holds the chart name. */}}
{{- define "spotrun.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's Deployment, Roles, Service: <fullname>-operator. */}}
{{- define "spotrun.operator" -}}
{{- printf "%s-operator" (include "spotrun.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spotrun.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spotrun.operator" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spotrun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spotrun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "spotrun.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "spotrun.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "spotrun.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the replicas must share a kopf peering (one active at a time). */}}
{{- define "spotrun.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{/*
Namespaced rules: what the operator does inside the namespaces it watches. A ClusterRole
holds them when it watches all namespaces, a Role in each watched namespace otherwise.
*/}}
{{- define "spotrun.rules.namespaced" -}}
# --- spotrun: its jobs, their pods, Events. Never Secrets: pods read the S3 credentials
# through secretKeyRef themselves.
- apiGroups: [spotrun.dev]
  resources: [resumabletrainingjobs]
  verbs: [get, list, watch, patch, delete]   # patch: finalizer, annotations; delete: ttlSecondsAfterFinished
- apiGroups: [spotrun.dev]
  resources: [resumabletrainingjobs/status]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete, patch]  # patch: the outcome finalizer
- apiGroups: [""]
  resources: [services]
  verbs: [create, get]  # a multi-node job's headless Service (owned by the job); get: whose it is on a 409
# --- kopf: Events for handler outcomes (spotrun posts its own decisions too).
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if and (include "spotrun.peering" .) .Values.watchNamespaces }}
# --- kopf: peering of 2+ replicas (one active), namespaced.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{/* Cluster-scoped rules: needed in every mode. */}}
{{- define "spotrun.rules.cluster" -}}
# --- spotrun: nodes, read-only (interruption taints, GPU capacity).
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, list, watch]
# --- kopf: namespaces (it resolves --namespace against the list) and CRDs (it checks that
# the resources it serves exist).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- if and (include "spotrun.peering" .) (not .Values.watchNamespaces) }}
# --- kopf: peering of 2+ replicas (one active): a ClusterKopfPeering when it watches all
# namespaces, a KopfPeering per namespace when started with --namespace.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings, kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end }}

{{/*
A value as a CEL literal. Kubernetes CEL wants homogeneous map values and list items, so each
one is wrapped in dyn(): {"key": dyn("pool"), "values": dyn([dyn("spot")])}.
*/}}
{{- define "spotrun.cel" -}}
{{- if kindIs "map" . -}}
{{- $items := list }}
{{- range $k, $v := . }}
{{- $items = append $items (printf "%s: dyn(%s)" (toJson $k) (include "spotrun.cel" $v)) }}
{{- end -}}
{{ printf "{%s}" (join ", " $items) }}
{{- else if kindIs "slice" . -}}
{{- $items := list }}
{{- range . }}
{{- $items = append $items (printf "dyn(%s)" (include "spotrun.cel" .)) }}
{{- end -}}
{{ printf "[%s]" (join ", " $items) }}
{{- else -}}
{{ toJson . }}
{{- end -}}
{{- end }}

{{/*
"true" when a jobDefaults value is set (then a MutatingAdmissionPolicy is wanted), else "".
*/}}
{{- define "spotrun.jobDefaults.wanted" -}}
{{- $d := .Values.jobDefaults -}}
{{- if or $d.spot.nodeSelectorTerms $d.spot.tolerations $d.storage.uriPrefix $d.storage.endpoint $d.storage.secretName -}}
true
{{- end -}}
{{- end }}

{{/*
The admissionregistration.k8s.io version of MutatingAdmissionPolicy that the API server serves,
or "" where it serves none: v1 (GA, Kubernetes 1.36+), else v1beta1 (1.34 and 1.35, only with
the MutatingAdmissionPolicy feature gate and --runtime-config=admissionregistration.k8s.io/v1beta1=true;
the same fields as v1). `helm install` asks the server; `helm template` knows only what
--api-versions names.
*/}}
{{- define "spotrun.admissionPolicyVersion" -}}
{{- $kind := "admissionregistration.k8s.io/%s/MutatingAdmissionPolicy" -}}
{{- if .Capabilities.APIVersions.Has (printf $kind "v1") -}}
v1
{{- else if .Capabilities.APIVersions.Has (printf $kind "v1beta1") -}}
v1beta1
{{- end -}}
{{- end }}
