{{/* The chart's name. */}}
{{- define "rivulet.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the objects of one release share it. */}}
{{- define "rivulet.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "rivulet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rivulet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rivulet
{{- end }}

{{/* The labels that select the operator's pods. */}}
{{- define "rivulet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rivulet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The selector labels as `key=value,…` (the operator's --operator-labels). */}}
{{- define "rivulet.selectorLabelPairs" -}}
{{- $pairs := list }}
{{- range $k, $v := (include "rivulet.selectorLabels" . | fromYaml) }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "rivulet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rivulet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "rivulet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "rivulet.workerImage" -}}
{{- printf "%s:%s" .Values.workerImage.repository (default .Chart.AppVersion .Values.workerImage.tag) }}
{{- end }}

{{/* "true" when the replicas elect a leader. */}}
{{- define "rivulet.leaderElection" -}}
{{- if kindIs "bool" .Values.leaderElection.enabled }}
{{- .Values.leaderElection.enabled }}
{{- else }}
{{- gt (int .Values.replicas) 1 }}
{{- end }}
{{- end }}

{{/* The hardened security context of every container the chart runs. */}}
{{- define "rivulet.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "rivulet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}
