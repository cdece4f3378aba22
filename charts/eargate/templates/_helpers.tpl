{{/* Chart name, truncated to a DNS label. */}}
{{- define "eargate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. Kept short so
that "<fullname>-reconciler" still fits a DNS label. */}}
{{- define "eargate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eargate.webhook.fullname" -}}{{ include "eargate.fullname" . }}-webhook{{- end }}
{{- define "eargate.reconciler.fullname" -}}{{ include "eargate.fullname" . }}-reconciler{{- end }}

{{- define "eargate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "eargate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: eargate
{{- end }}

{{- define "eargate.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eargate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end }}

{{- define "eargate.reconciler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eargate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: reconciler
{{- end }}

{{- define "eargate.webhook.serviceAccountName" -}}
{{- if .Values.webhook.serviceAccount.create }}
{{- default (include "eargate.webhook.fullname" .) .Values.webhook.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.webhook.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "eargate.reconciler.serviceAccountName" -}}
{{- if .Values.reconciler.serviceAccount.create }}
{{- default (include "eargate.reconciler.fullname" .) .Values.reconciler.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.reconciler.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest] of an image block; the tag defaults to the appVersion. */}}
{{- define "eargate.imageRef" -}}
{{- $img := index . 0 }}{{- $root := index . 1 }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "eargate.image" -}}
{{- include "eargate.imageRef" (list .Values.image .) }}
{{- end }}

{{/* The Job image: its own block when a repository is set, else the chart's image. */}}
{{- define "eargate.jobImage" -}}
{{- if .Values.reconciler.jobImage.repository }}
{{- include "eargate.imageRef" (list .Values.reconciler.jobImage .) }}
{{- else }}
{{- include "eargate.image" . }}
{{- end }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate. */}}
{{- define "eargate.tls.secretName" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secret.name is required when tls.mode=secret" .Values.tls.secret.name }}
{{- else }}
{{- include "eargate.webhook.fullname" . }}-tls
{{- end }}
{{- end }}

{{/* DNS names kube-apiserver uses to reach the webhook Service. */}}
{{- define "eargate.webhook.dnsNames" -}}
{{- $svc := include "eargate.webhook.fullname" . }}
{{- list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) (printf "%s.%s.svc.cluster.local" $svc .Release.Namespace) | toJson }}
{{- end }}

{{/* Identities allowed to change status.encryption: the reconciler's ServiceAccount
(when the reconciler runs here) plus webhook.statusWriters. */}}
{{- define "eargate.statusWriters" -}}
{{- $writers := list }}
{{- if .Values.reconciler.enabled }}
{{- $writers = append $writers (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "eargate.reconciler.serviceAccountName" .)) }}
{{- end }}
{{- range .Values.webhook.statusWriters }}
{{- $writers = append $writers . }}
{{- end }}
{{- if not $writers }}
{{- fail "webhook.statusWriters must name who writes Cluster status when reconciler.enabled=false (on a Kubermatic seed: the seed controller manager's ServiceAccount, e.g. system:serviceaccount:kubermatic:kubermatic-seed-controller-manager)" }}
{{- end }}
{{- $writers | uniq | toJson }}
{{- end }}

{{/* webhook.shutdownDelay as given to --shutdown-delay, checked: one number and a unit
(ms, s, m) or a bare number of seconds. */}}
{{- define "eargate.webhook.shutdownDelay" -}}
{{- $d := toString .Values.webhook.shutdownDelay | trim }}
{{- if not (regexMatch "^[0-9]+(ms|s|m)?$" $d) }}
{{- fail (printf "webhook.shutdownDelay must be a duration such as 5s, 500ms or 0s (a whole number and one unit: ms, s or m), got %q" $d) }}
{{- end }}
{{- $d }}
{{- end }}

{{/* webhook.shutdownDelay in whole seconds, rounded up. */}}
{{- define "eargate.webhook.shutdownDelaySeconds" -}}
{{- $d := include "eargate.webhook.shutdownDelay" . }}
{{- if hasSuffix "ms" $d }}
{{- div (add (trimSuffix "ms" $d | atoi) 999) 1000 }}
{{- else if hasSuffix "m" $d }}
{{- mul (trimSuffix "m" $d | atoi) 60 }}
{{- else }}
{{- trimSuffix "s" $d | atoi }}
{{- end }}
{{- end }}

{{/* The webhook pod's terminationGracePeriodSeconds: it must outlast the shutdown delay
plus the drain (eargate's drain timeout, DEFAULT_DRAIN_TIMEOUT: 10 s), or the kubelet's
SIGKILL cuts reviews off. */}}
{{- define "eargate.webhook.terminationGracePeriodSeconds" -}}
{{- $needed := add (include "eargate.webhook.shutdownDelaySeconds" . | atoi) 10 }}
{{- $given := .Values.webhook.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $given }}{{ $given = "" }}{{ end }}
{{- if eq (toString $given) "" }}
{{- add $needed 5 }}
{{- else if not (regexMatch "^[0-9]+$" (toString $given)) }}
{{- fail (printf "webhook.terminationGracePeriodSeconds must be a whole number of seconds, got %q" (toString $given)) }}
{{- else if le (int $given) $needed }}
{{- fail (printf "webhook.terminationGracePeriodSeconds (%d) must be larger than webhook.shutdownDelay (%s) + the 10 s drain: at least %d" (int $given) (include "eargate.webhook.shutdownDelay" .) (add $needed 1)) }}
{{- else }}
{{- int $given }}
{{- end }}
{{- end }}

{{/* Spread replicas across nodes unless the user gave constraints of their own. */}}
{{- define "eargate.topologySpread" -}}
{{- $c := index . 0 }}{{- $selector := index . 1 }}
{{- if $c.topologySpreadConstraints }}
{{- toYaml $c.topologySpreadConstraints }}
{{- else }}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- $selector | nindent 6 }}
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- $selector | nindent 6 }}
{{- end }}
{{- end }}

{{- define "eargate.affinity" -}}
{{- $c := index . 0 }}{{- $selector := index . 1 }}
{{- if $c.affinity }}
{{- toYaml $c.affinity }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- $selector | nindent 12 }}
{{- end }}
{{- end }}

{{/* clientConfig of a webhook: the Service, a path, and the CA bundle when the chart knows it
(cert-manager's CA injector fills it otherwise). */}}
{{- define "eargate.webhook.clientConfig" -}}
{{- $ctx := index . 0 }}{{- $path := index . 1 }}{{- $caBundle := index . 2 -}}
service:
  name: {{ include "eargate.webhook.fullname" $ctx }}
  namespace: {{ $ctx.Release.Namespace }}
  path: {{ $path }}
  port: {{ $ctx.Values.webhook.service.port }}
{{- if $caBundle }}
caBundle: {{ $caBundle }}
{{- end }}
{{- end }}
{{- define "eargate.webhook.annotations" -}}
{{- if eq .Values.tls.mode "certManager" -}}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "eargate.webhook.fullname" . }}
{{- end }}
{{- end }}
