{{/* Names: <release>-callmesh, or the release name when it holds "callmesh". */}}
{{- define "callmesh.fullname" -}}
{{- if contains "callmesh" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-callmesh" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object; "component" is gateway, router, turn or webhook. */}}
{{- define "callmesh.labels" -}}
{{ include "callmesh.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "callmesh.selectorLabels" -}}
app.kubernetes.io/name: callmesh
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "callmesh.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end -}}

{{/* Secret names: the user's existing Secret, or the chart's. */}}
{{- define "callmesh.natsSecret" -}}
{{ .Values.nats.existingSecret | default (printf "%s-nats-logins" (include "callmesh.fullname" .)) }}
{{- end -}}
{{- define "callmesh.jwtSecret" -}}
{{ .Values.jwtSecret.existingSecret | default (printf "%s-jwt" (include "callmesh.fullname" .)) }}
{{- end -}}
{{- define "callmesh.turnSecret" -}}
{{ .Values.turn.existingSecret | default (printf "%s-turn" (include "callmesh.fullname" .)) }}
{{- end -}}
{{- define "callmesh.webhookSecret" -}}
{{ .Values.webhook.existingSecret | default (printf "%s-webhook" (include "callmesh.fullname" .)) }}
{{- end -}}

{{/*
A value for a chart-made Secret: the given one, else the one the Secret
already holds (upgrades keep it), else a random one. Argument: dict root,
secret (name), key, value.
*/}}
{{- define "callmesh.secretValue" -}}
{{- if .value -}}
{{ .value }}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{ index $existing.data .key | b64dec }}
{{- else -}}
{{ randAlphaNum 40 }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Environment variables from configuration keys: global config, then the
component's (which wins). Argument: dict root, config (the component's),
reserved (keys the chart sets itself, refused here).
*/}}
{{- define "callmesh.configEnv" -}}
{{- $config := merge (deepCopy .config) (deepCopy .root.Values.config) -}}
{{- range $key, $value := $config }}
{{- if has $key $.reserved }}
{{- fail (printf "config key %s is set by the chart; use its value instead (values.yaml)" $key) }}
{{- end }}
- name: {{ printf "CALLMESH_%s" ($key | replace "." "_" | upper) }}
  value: {{ include "callmesh.configValue" $value | quote }}
{{- end }}
{{- end -}}

{{/* A key's value as the environment takes it: lists and maps as JSON, whole numbers without an exponent. */}}
{{- define "callmesh.configValue" -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) -}}
{{ toJson . }}
{{- else if and (kindIs "float64" .) (eq (float64 .) (floor .)) -}}
{{ int64 . }}
{{- else -}}
{{ . }}
{{- end -}}
{{- end -}}

{{/* The NATS login of a component. Argument: dict root, user, key (in the logins Secret). */}}
{{- define "callmesh.natsEnv" -}}
- name: CALLMESH_NATS_URL
  value: {{ .root.Values.nats.url | quote }}
- name: CALLMESH_NATS_USER
  value: {{ .user | quote }}
- name: CALLMESH_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "callmesh.natsSecret" .root }}
      key: {{ .key }}
{{- end -}}

{{/* Go's heap limit from the container's memory limit. */}}
{{- define "callmesh.goMemLimit" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end -}}

{{/*
Pod settings every component shares. Service links are off: Kubernetes
would add CALLMESH_<SERVICE>_* variables for this chart's Services, and
callmesh refuses unknown CALLMESH_ variables at start.
*/}}
{{- define "callmesh.podDefaults" -}}
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "callmesh.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* Spread a component's pods over nodes. Argument: dict root, component. */}}
{{- define "callmesh.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "callmesh.selectorLabels" . | nindent 8 }}
{{- end -}}

{{/* nodeSelector, tolerations and affinity of a component's values. */}}
{{- define "callmesh.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
