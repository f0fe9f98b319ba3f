{{/*
A headless process (relay, projection, embed, extract, agent, communities or alerts worker): a
Deployment serving /metrics, /health and /ready on the metrics port, and its HPA and PDB when
asked for.

{root, component, kind, args (after the subcommand), cfg, secrets (secrets.keys entries),
 models (bool), partitions (0: not a consumer group), context, recreate (bool),
 env (optional: more env entries, YAML)}
*/}}
{{- define "plasma.worker" -}}
{{- $root := .root }}
{{- $cfg := .cfg }}
{{- $name := include "plasma.componentName" (dict "root" $root "component" .component) }}
{{- $labels := dict "root" $root "component" .component "kind" .kind }}
{{- $autoscaling := and $cfg.autoscaling (index $cfg.autoscaling "enabled") }}
{{- if gt (.partitions | int) 0 }}
{{- include "plasma.boundedReplicas" (dict "cfg" $cfg "partitions" .partitions "what" $name) }}
{{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "plasma.componentLabels" $labels | nindent 4 }}
  {{- if gt (.partitions | int) 0 }}
  annotations:
    plasma/topic: {{ printf "%s.%s.events" $root.Values.kafka.topicPrefix .context | quote }}
    plasma/partitions: {{ .partitions | quote }}
  {{- end }}
spec:
  {{- if not $autoscaling }}
  replicas: {{ $cfg.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if .recreate }}
  strategy:
    type: Recreate
  {{- else }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  {{- end }}
  selector:
    matchLabels:
      {{- include "plasma.selectorLabels" $labels | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "plasma.componentLabels" $labels | nindent 8 }}
        plasma/metrics: "true"
      annotations:
        checksum/config: {{ include "plasma.settings" $root | sha256sum }}
        {{- with $cfg.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "plasma.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $cfg.terminationGracePeriodSeconds }}
      {{- include "plasma.podSecurityContext" $root | nindent 6 }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- include "plasma.scheduling" $labels | nindent 6 }}
      containers:
        - name: {{ .kind }}
          image: {{ include "plasma.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            - {{ .kind }}
            {{- range .args }}
            - {{ . | quote }}
            {{- end }}
            - --metrics-listen
            - {{ printf "0.0.0.0:%d" ($root.Values.metricsPort | int) | quote }}
          ports:
            - name: metrics
              containerPort: {{ $root.Values.metricsPort }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "plasma.fullname" $root }}
          env:
            - name: PLASMA_DATABASE_MAX_CONNECTIONS
              value: {{ $cfg.maxConnections | quote }}
            {{- include "plasma.secretEnv" (dict "root" $root "names" .secrets) | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- include "plasma.otelEnv" (dict "root" $root "component" .component) | nindent 12 }}
          {{- include "plasma.probes" (dict "root" $root "port" "metrics") | nindent 10 }}
          resources:
            {{- toYaml $cfg.resources | nindent 12 }}
          {{- include "plasma.securityContext" $root | nindent 10 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if .models }}
            - name: models
              mountPath: {{ $root.Values.models.mountPath }}
              readOnly: true
            {{- end }}
      volumes:
        {{- include "plasma.tmpVolume" $root | nindent 8 }}
        {{- if .models }}
        {{- include "plasma.modelsVolume" $root | nindent 8 }}
        {{- end }}
{{- if $autoscaling }}
{{- $max := $cfg.autoscaling.maxReplicas | int }}
{{- if eq $max 0 }}{{ $max = .partitions | int }}{{ end }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "plasma.componentLabels" $labels | nindent 4 }}
  annotations:
    plasma/partitions: {{ .partitions | quote }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $cfg.autoscaling.minReplicas }}
  # Bounded by the partitions of {{ printf "%s.%s.events" $root.Values.kafka.topicPrefix .context }}: a consumer beyond them idles.
  maxReplicas: {{ $max }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $cfg.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      # Every scale event rebalances the consumer group: scale down slowly.
      stabilizationWindowSeconds: 600
      policies:
        - type: Pods
          value: 1
          periodSeconds: 120
{{- end }}
{{- if and $cfg.pdb $cfg.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "plasma.componentLabels" $labels | nindent 4 }}
spec:
  maxUnavailable: {{ $cfg.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "plasma.selectorLabels" $labels | nindent 6 }}
{{- end }}
{{- end }}
