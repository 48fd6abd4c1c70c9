{{- define "previewd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "previewd.fullname" -}}
{{- if contains (include "previewd.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "previewd.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "previewd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "previewd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "previewd.labels" -}}
{{ include "previewd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The reconciler configuration as mounted: `.Values.config`, with `argocd.project` set to the
AppProject the chart creates (a different explicit value is refused, so the two cannot drift).
*/}}
{{- define "previewd.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $argocd := dict -}}
{{- if hasKey $config "argocd" -}}{{- $argocd = get $config "argocd" -}}{{- end -}}
{{- if .Values.argocd.appProject.create -}}
{{- $set := get $argocd "project" -}}
{{- if and $set (ne $set .Values.argocd.appProject.name) -}}
{{- fail (printf "config.argocd.project (%s) differs from argocd.appProject.name (%s): previews must use the project the chart creates" $set .Values.argocd.appProject.name) -}}
{{- end -}}
{{- $_ := set $argocd "project" .Values.argocd.appProject.name -}}
{{- end -}}
{{- $_ := set $config "argocd" $argocd -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Previewd's service account, as the API server names it in admission requests. */}}
{{- define "previewd.serviceAccountUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "previewd.fullname" .) -}}
{{- end -}}

{{/*
Previewd's own image, with the first of `config.images.rewrites` whose `from` prefixes it
applied (the same rewrites Previewd applies to the images it writes: an air-gapped mirror).
*/}}
{{- define "previewd.image" -}}
{{- $own := dict "repository" .Values.image.repository "tag" (.Values.image.tag | default .Chart.AppVersion) -}}
{{- include "previewd.otherImage" (dict "image" $own "root" .) -}}
{{- end -}}

{{/*
The in-cluster front's NATS: front.natsUrl, or the release's own server (front.nats.enabled).
*/}}
{{- define "previewd.natsUrl" -}}
{{- if .Values.front.natsUrl -}}
{{- .Values.front.natsUrl -}}
{{- else if .Values.front.nats.enabled -}}
{{- printf "nats://%s-nats.%s.svc:4222" (include "previewd.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- fail "front.enabled needs front.natsUrl or front.nats.enabled" -}}
{{- end -}}
{{- end -}}

{{/*
An image of someone else's (`repository`, `tag`) with the first matching rewrite applied.
*/}}
{{- define "previewd.otherImage" -}}
{{- $image := printf "%s:%s" .image.repository .image.tag -}}
{{- $done := false -}}
{{- $images := .root.Values.config.images | default dict -}}
{{- range ($images.rewrites | default list) -}}
{{- if and (not $done) (hasPrefix .from $image) -}}
{{- $image = printf "%s%s" .to (trimPrefix .from $image) -}}
{{- $done = true -}}
{{- end -}}
{{- end -}}
{{- $image -}}
{{- end -}}

{{/*
Selector labels of a component of its own (the in-cluster front, its NATS): a name apart from
the reconciler's, so no selector of one matches the other's pods.
*/}}
{{- define "previewd.componentSelectorLabels" -}}
app.kubernetes.io/name: {{ include "previewd.name" .root }}-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
What this release is: `control` (Previewd itself) or `previewCluster` (only what Previewd needs
in a cluster that holds previews: its ServiceAccount and token, the ClusterRole, and the
admission policies; docs/multi-cluster.md).
*/}}
{{- define "previewd.role" -}}
{{- $role := .Values.role | default "control" -}}
{{- if not (has $role (list "control" "previewCluster")) -}}
{{- fail (printf "role: %q is neither control nor previewCluster" $role) -}}
{{- end -}}
{{- $role -}}
{{- end -}}

{{/*
The rules Previewd needs on a preview's namespaced objects, wherever the preview is. `watch`:
in the control cluster the controller also caches them (list, watch).
*/}}
{{- define "previewd.previewRules" -}}
{{- $read := ternary (list "get" "list" "watch") (list "get") .watch -}}
{{- $config := include "previewd.config" .root | fromYaml -}}
{{- $secrets := $config.secrets | default dict -}}
# Preview namespaces come and go: cluster-wide by necessity (the admission policy narrows
# writes to Previewd's own namespaces). Their content goes with the namespace, so it never
# deletes those one by one. Secrets: it writes copies into previews (create, patch; never
# reads them there).
- apiGroups: [""]
  resources: [namespaces]
  verbs: {{ concat $read (list "create" "patch" "delete") | toJson }}
- apiGroups: [""]
  resources: [resourcequotas, limitranges]
  verbs: {{ concat $read (list "create" "patch") | toJson }}
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies, ingresses]
  verbs: {{ concat $read (list "create" "patch") | toJson }}
# Baseline stand-ins (ExternalName Services, `unchangedServices: baseline`): a service the
# PR starts to change gets its own Service from its chart, so the stand-in is deleted.
- apiGroups: [""]
  resources: [services]
  verbs: {{ concat $read (list "create" "patch" "delete") | toJson }}
{{- if $secrets.sourceNamespaces }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [create, patch]
{{- end }}
{{- $seeds := false }}
{{- range $config.repositories }}{{ if .seed }}{{ $seeds = true }}{{ end }}{{ end }}
{{- if $seeds }}
# Synthetic data: a loader Job and its data set per schema, in preview namespaces only
# (the admission policy); the Jobs are read to see them end.
- apiGroups: [batch]
  resources: [jobs]
  verbs: {{ concat $read (list "create" "patch") | toJson }}
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]
{{- end }}
{{- if $secrets.externalSecrets }}
- apiGroups: [external-secrets.io]
  resources: [externalsecrets]
  verbs: [get, create, patch]
{{- end }}
{{- end -}}
