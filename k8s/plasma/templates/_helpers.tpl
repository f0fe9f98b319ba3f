{{/*
Names, labels and the pieces every pod shares.
*/}}

{{- define "plasma.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plasma.fullname" -}}
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

{{/* A Kubernetes name for a component: read model names use `_`, names may not. */}}
{{- define "plasma.componentName" -}}
{{- printf "%s-%s" (include "plasma.fullname" .root) (.component | lower | replace "_" "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plasma.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "plasma.commonLabels" -}}
helm.sh/chart: {{ include "plasma.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plasma-engine
{{- end }}

{{- define "plasma.labels" -}}
{{ include "plasma.commonLabels" . }}
app.kubernetes.io/name: {{ include "plasma.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels of one component: {root, component}. */}}
{{- define "plasma.selectorLabels" -}}
app.kubernetes.io/name: {{ include "plasma.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component | lower | replace "_" "-" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* All labels of one component's objects: {root, component, kind}. */}}
{{- define "plasma.componentLabels" -}}
{{ include "plasma.commonLabels" .root }}
{{ include "plasma.selectorLabels" . }}
plasma/kind: {{ .kind }}
{{- end }}

{{- define "plasma.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "plasma.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "plasma.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The partition count of a context's topic; fails when the context is unknown.
{root, context}
*/}}
{{- define "plasma.partitions" -}}
{{- $p := index .root.Values.kafka.partitions .context }}
{{- if not $p }}
{{- fail (printf "kafka.partitions.%s is not set: the partition count of the %s topic bounds its consumers" .context .context) }}
{{- end }}
{{- $p | int }}
{{- end }}

{{/*
The non-secret PLASMA_* settings every component shares, as a dict (the ConfigMap's data, and
the hook Jobs' env: hooks run before the ConfigMap exists on a first install).
*/}}
{{- define "plasma.settings" -}}
{{- $s := dict }}
{{- $_ := set $s "PLASMA_MODE" "server" }}
{{- $_ := set $s "PLASMA_PROJECTIONS" "external" }}
{{- $_ := set $s "PLASMA_KAFKA_BROKERS" (required "kafka.brokers is required" .Values.kafka.brokers) }}
{{- $_ := set $s "PLASMA_SCHEMA_REGISTRY_URL" (required "schemaRegistry.url is required" .Values.schemaRegistry.url) }}
{{- $_ := set $s "PLASMA_TOPIC_PREFIX" .Values.kafka.topicPrefix }}
{{- $_ := set $s "PLASMA_LISTEN" (printf "0.0.0.0:%d" (.Values.gateway.port | int)) }}
{{- if .Values.embed.models }}
{{- $_ := set $s "PLASMA_EMBEDDERS" (join "," .Values.embed.models) }}
{{- $_ := set $s "PLASMA_MODELS_DIR" .Values.models.mountPath }}
{{- else }}
{{- $_ := set $s "PLASMA_EMBEDDERS" "none" }}
{{- end }}
{{- with .Values.auth.oidc }}
{{- if .issuer }}
{{- if not $.Values.secrets.keys.webhookKey }}
{{- fail "auth.oidc.issuer needs secrets.keys.webhookKey: there is no HS256 secret to derive it from" }}
{{- end }}
{{- $_ := set $s "PLASMA_OIDC_ISSUER" .issuer }}
{{- $_ := set $s "PLASMA_OIDC_AUDIENCE" (required "auth.oidc.audience is required with an issuer" .audience) }}
{{- if .jwksUrl }}{{- $_ := set $s "PLASMA_OIDC_JWKS_URL" .jwksUrl }}{{- end }}
{{- $_ := set $s "PLASMA_OIDC_TENANT_CLAIM" .tenantClaim }}
{{- $_ := set $s "PLASMA_OIDC_ROLES_CLAIM" .rolesClaim }}
{{- end }}
{{- end }}
{{- /* The agent's settings: only `plasma agent` runs them, but every component validates them. */}}
{{- with .Values.agent }}
{{- $provider := .provider | default "template" }}
{{- if not (has $provider (list "template" "openai")) }}
{{- fail (printf "agent.provider %q is not a provider: use template or openai" $provider) }}
{{- end }}
{{- $_ := set $s "PLASMA_LLM_PROVIDER" $provider }}
{{- $openai := .openai | default dict }}
{{- if eq $provider "openai" }}
{{- $url := required "agent.openai.baseUrl is required with agent.provider openai, e.g. https://api.openai.com/v1" $openai.baseUrl }}
{{- if not (regexMatch "^https?://" $url) }}
{{- fail (printf "agent.openai.baseUrl %q must be an http(s) URL" $url) }}
{{- end }}
{{- $_ := required "agent.openai.model is required with agent.provider openai" $openai.model }}
{{- end }}
{{- with $openai.baseUrl }}{{- $_ := set $s "PLASMA_OPENAI_BASE_URL" . }}{{- end }}
{{- with $openai.model }}{{- $_ := set $s "PLASMA_OPENAI_MODEL" . }}{{- end }}
{{- with .httpAllowedHosts }}
{{- if not (kindIs "slice" .) }}
{{- fail "agent.httpAllowedHosts is a list of host names" }}
{{- end }}
{{- $_ := set $s "PLASMA_AGENT_HTTP_ALLOWED_HOSTS" (join "," .) }}
{{- end }}
{{- with .publishWebhookUrl }}{{- $_ := set $s "PLASMA_PUBLISH_WEBHOOK_URL" . }}{{- end }}
{{- $concurrency := 32 }}
{{- if hasKey . "concurrency" }}{{ $concurrency = .concurrency | int }}{{ end }}
{{- if or (lt $concurrency 1) (gt $concurrency 1024) }}
{{- fail (printf "agent.concurrency %d must be between 1 and 1024" $concurrency) }}
{{- end }}
{{- $_ := set $s "PLASMA_AGENT_CONCURRENCY" (toString $concurrency) }}
{{- $_ := set $s "PLASMA_AGENT_LEASE" (.lease | default "10s" | toString) }}
{{- $_ := set $s "PLASMA_AGENT_CHECKPOINT_RETENTION" (.checkpointRetention | default "7d" | toString) }}
{{- $kept := 1 }}
{{- if hasKey . "checkpointsKept" }}{{ $kept = .checkpointsKept | int }}{{ end }}
{{- if or (lt $kept 1) (gt $kept 100) }}
{{- fail (printf "agent.checkpointsKept %d must be between 1 and 100" $kept) }}
{{- end }}
{{- $_ := set $s "PLASMA_AGENT_CHECKPOINTS_KEPT" (toString $kept) }}
{{- end }}
{{- range $name, $value := .Values.config }}
{{- if regexMatch "(?i)(SECRET|KEY|PASSWORD|TOKEN|DATABASE_URL)" $name }}
{{- fail (printf "config.%s looks like a secret: put it in the Secret %q and reference it (secrets.keys), never in values" $name $.Values.secrets.existingSecret) }}
{{- end }}
{{- if not (regexMatch "^[A-Z_][A-Z0-9_]*$" $name) }}
{{- fail (printf "config.%s is not an environment variable name" $name) }}
{{- end }}
{{- if ne (toString $value) "" }}
{{- $_ := set $s $name (toString $value) }}
{{- end }}
{{- end }}
{{- toYaml $s }}
{{- end }}

{{/*
Secret env vars, each from the existing Secret: {root, names: list of secrets.keys entries}.
*/}}
{{- define "plasma.secretEnv" -}}
{{- $secret := required "secrets.existingSecret is required: the name of an existing Secret" .root.Values.secrets.existingSecret }}
{{- $vars := dict "databaseUrl" "PLASMA_DATABASE_URL" "jwtSecret" "PLASMA_JWT_SECRET" "webhookKey" "PLASMA_WEBHOOK_KEY" }}
{{- range .names }}
{{- $key := index $.root.Values.secrets.keys . }}
{{- if and (eq . "jwtSecret") $.root.Values.auth.oidc.issuer }}
{{- /* Tokens come from the OIDC issuer: no shared secret to read. */}}
{{- else if $key }}
- name: {{ index $vars . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- else if eq . "databaseUrl" }}
{{- fail "secrets.keys.databaseUrl is required" }}
{{- else if eq . "jwtSecret" }}
{{- fail "secrets.keys.jwtSecret is required" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The agent pod's own env: the OpenAI API key from an existing Secret, when one is named.
*/}}
{{- define "plasma.agentEnv" -}}
{{- with .Values.agent.openai.apiKeySecret }}
{{- if .name }}
- name: PLASMA_OPENAI_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ required "agent.openai.apiKeySecret.key is required with its name" .key }}
{{- end }}
{{- end }}
{{- end }}

{{/* The port of an http(s) URL: its own, else 443 or 80 by scheme. */}}
{{- define "plasma.urlPort" -}}
{{- $url := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- if not $port }}{{ $port = ternary "443" "80" (eq $url.scheme "https") }}{{ end }}
{{- $port }}
{{- end }}

{{/*
OpenTelemetry env vars of one component when otel.endpoint is set: {root, component}.
*/}}
{{- define "plasma.otelEnv" -}}
{{- $otel := .root.Values.otel }}
{{- if $otel.endpoint }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $otel.endpoint | quote }}
{{- if $otel.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $otel.protocol | quote }}
{{- end }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "%s-%s" $otel.serviceNamePrefix (.component | lower | replace "_" "-") | quote }}
{{- $attrs := list (printf "deployment.environment.name=%s" .root.Values.environment) (printf "service.namespace=%s" .root.Release.Name) (printf "service.version=%s" (default .root.Chart.AppVersion .root.Values.image.tag)) (printf "k8s.namespace.name=%s" .root.Release.Namespace) "k8s.pod.name=$(POD_NAME)" }}
{{- range $k, $v := $otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k (toString $v)) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}

{{/* The pod's security context. */}}
{{- define "plasma.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* A container's security context. */}}
{{- define "plasma.securityContext" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end }}

{{/* Scheduling shared by every pod: {root, component}. */}}
{{- define "plasma.scheduling" -}}
{{- with .root.Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $key, $topology := dict "zone" "topology.kubernetes.io/zone" "hostname" "kubernetes.io/hostname" }}
  {{- $c := index $.root.Values.topologySpread $key }}
  - maxSkew: {{ $c.maxSkew }}
    topologyKey: {{ $topology }}
    whenUnsatisfiable: {{ $c.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "plasma.selectorLabels" $ | nindent 8 }}
    matchLabelKeys:
      - pod-template-hash
  {{- end }}
{{- end }}
{{- end }}

{{/* The writable scratch dir the read-only root filesystem lacks. */}}
{{- define "plasma.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end }}

{{- define "plasma.modelsVolume" -}}
- name: models
{{- if .Values.models.volume }}
  {{- toYaml .Values.models.volume | nindent 2 }}
{{- else }}
  persistentVolumeClaim:
    claimName: {{ required "models.existingClaim (or models.volume) is required while embed.models is not empty" .Values.models.existingClaim }}
    readOnly: true
{{- end }}
{{- end }}

{{/* Probes on a named port: liveness /health, readiness /ready, startup /health. */}}
{{- define "plasma.probes" -}}
{{- $p := .root.Values.probes }}
startupProbe:
  httpGet:
    path: /health
    port: {{ .port }}
  periodSeconds: {{ $p.startup.periodSeconds }}
  failureThreshold: {{ $p.startup.failureThreshold }}
  timeoutSeconds: {{ $p.startup.timeoutSeconds }}
livenessProbe:
  httpGet:
    path: /health
    port: {{ .port }}
  periodSeconds: {{ $p.liveness.periodSeconds }}
  failureThreshold: {{ $p.liveness.failureThreshold }}
  timeoutSeconds: {{ $p.liveness.timeoutSeconds }}
readinessProbe:
  httpGet:
    path: /ready
    port: {{ .port }}
  periodSeconds: {{ $p.readiness.periodSeconds }}
  failureThreshold: {{ $p.readiness.failureThreshold }}
  timeoutSeconds: {{ $p.readiness.timeoutSeconds }}
{{- end }}

{{/*
An HPA bounded by a topic's partition count, or the check of a fixed replica count against it.
{root, name, labels, cfg (replicas, autoscaling), partitions, what}
*/}}
{{- define "plasma.boundedReplicas" -}}
{{- $partitions := .partitions | int }}
{{- if .cfg.autoscaling.enabled }}
{{- $max := .cfg.autoscaling.maxReplicas | int }}
{{- if eq $max 0 }}{{ $max = $partitions }}{{ end }}
{{- if gt $max $partitions }}
{{- fail (printf "%s: autoscaling.maxReplicas %d exceeds the %d partitions of its topic; members beyond the partition count idle" .what $max $partitions) }}
{{- end }}
{{- if gt (.cfg.autoscaling.minReplicas | int) $max }}
{{- fail (printf "%s: autoscaling.minReplicas exceeds maxReplicas %d" .what $max) }}
{{- end }}
{{- else if gt (.cfg.replicas | int) $partitions }}
{{- fail (printf "%s: replicas %d exceeds the %d partitions of its topic; members beyond the partition count idle" .what (.cfg.replicas | int) $partitions) }}
{{- end }}
{{- end }}

{{/* Egress of every pod: DNS, the external endpoints, the OTLP collector. */}}
{{- define "plasma.egressRules" -}}
{{- include "plasma.egressRulesTo" (dict "root" . "endpoints" (list "database" "kafka" "schemaRegistry")) }}
{{- end }}

{{/*
Egress to DNS, some of the external endpoints (networkPolicy.egress keys) and the OTLP
collector: {root, endpoints}.
*/}}
{{- define "plasma.egressRulesTo" -}}
{{- $np := .root.Values.networkPolicy }}
{{- if not (kindIs "map" $np.egress) }}
{{- fail "networkPolicy.egress is a map of NetworkPolicyEgressRule lists: database, kafka, schemaRegistry" }}
{{- end }}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $np.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml $np.dns.podLabels | nindent 10 }}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- range .endpoints }}
{{- with index $np.egress . }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- if and .root.Values.otel.endpoint $np.otelPorts }}
- ports:
    {{- range $np.otelPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}
