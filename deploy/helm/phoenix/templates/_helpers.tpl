{{/* Names: <release>-phoenix unless the release name already says phoenix. */}}
{{- define "phoenix.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "phoenix.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "phoenix.agent.fullname" -}}
{{- printf "%s-agent" (include "phoenix.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "phoenix.controller.fullname" -}}
{{- printf "%s-controller" (include "phoenix.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object; selector labels are the stable subset. */}}
{{- define "phoenix.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: phoenix
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "phoenix.agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phoenix.name" . }}-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "phoenix.controller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phoenix.name" . }}-controller
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "phoenix.backup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "phoenix.name" . }}-controller-backup
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: backup
{{- end -}}

{{/* repository:tag, or repository@digest. Argument: an image value. */}}
{{- define "phoenix.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding api-token and agent-token. */}}
{{- define "phoenix.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "phoenix.fullname" .)) .Values.controller.tokens.existingSecret -}}
{{- end -}}

{{/* What agents connect to: the given URL, or this release's controller. */}}
{{- define "phoenix.agent.controllerURL" -}}
{{- if .Values.agent.controller.url -}}
{{- .Values.agent.controller.url -}}
{{- else -}}
{{- printf "%s://%s:%v" (ternary "https" "http" .Values.controller.tls.enabled) (include "phoenix.controller.fullname" .) .Values.controller.service.grpcPort -}}
{{- end -}}
{{- end -}}

{{/* Whether agents connect to a controller at all. */}}
{{- define "phoenix.agent.connects" -}}
{{- if and .Values.agent.controller.enabled (or .Values.controller.enabled .Values.agent.controller.url) -}}true{{- end -}}
{{- end -}}

{{/* The agent's config file: the value given, or configs/agent.yaml;
with agent.diskQueue.enabled, every OTLP exporter without a storage of its
own gets one under the mounted queue directory. */}}
{{- define "phoenix.agent.config" -}}
{{- $text := .Files.Get "files/agent.yaml" -}}
{{- if .Values.agent.config -}}
{{- $text = toYaml .Values.agent.config -}}
{{- end -}}
{{- if .Values.agent.diskQueue.enabled -}}
{{- $config := fromYaml $text -}}
{{- range $id, $exporter := $config.exporters -}}
{{- $type := first (splitList "/" $id) -}}
{{- if and (has $type (list "otlp_grpc" "otlp_http")) (kindIs "map" $exporter) -}}
{{- $queue := $exporter.sending_queue | default (dict) -}}
{{- if not $queue.storage -}}
{{- $_ := set $queue "storage" (dict "directory" (printf "%s/%s" (include "phoenix.agent.queueMountPath" $) (replace "/" "_" $id)) "max_megabytes" $.Values.agent.diskQueue.maxMegabytes) -}}
{{- end -}}
{{- $_ := set $exporter "sending_queue" $queue -}}
{{- end -}}
{{- end -}}
{{- toYaml $config -}}
{{- else -}}
{{- $text -}}
{{- end -}}
{{- end -}}

{{/* Where the node's queue directory is mounted in the agent container. */}}
{{- define "phoenix.agent.queueMountPath" -}}/var/lib/phoenix/queue{{- end -}}

{{- define "phoenix.priorityClassName" -}}
{{- default (include "phoenix.agent.fullname" .) .Values.agent.priorityClass.name -}}
{{- end -}}
