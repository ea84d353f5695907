{{/*
Chart name, truncated to 63 characters (the DNS label limit).
*/}}
{{- define "lucid-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Components append "-pdp", "-proxy" or "-app", so the
base is cut to 56 characters to leave room for the suffix.
*/}}
{{- define "lucid-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "lucid-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "lucid-gateway.labels" -}}
helm.sh/chart: {{ include "lucid-gateway.chart" . }}
{{ include "lucid-gateway.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lucid-gateway
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "lucid-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lucid-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels and selector labels of one component: (dict "ctx" $ "component" "pdp").
*/}}
{{- define "lucid-gateway.componentLabels" -}}
{{ include "lucid-gateway.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "lucid-gateway.componentSelectorLabels" -}}
{{ include "lucid-gateway.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Name of one component's objects: (dict "ctx" $ "component" "pdp").
*/}}
{{- define "lucid-gateway.componentFullname" -}}
{{- printf "%s-%s" (include "lucid-gateway.fullname" .ctx) .component }}
{{- end }}

{{/*
Pods that may call the PDP carry this label (the NetworkPolicy selects on it).
*/}}
{{- define "lucid-gateway.pdpClientLabel" -}}
lucid-gateway.io/pdp-client: "true"
{{- end }}

{{- define "lucid-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lucid-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: (dict "image" .Values.pdp.image "default" .Chart.AppVersion).
A digest wins over the tag; an empty tag falls back to the default.
*/}}
{{- define "lucid-gateway.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (.image.tag | default .default | toString) }}
{{- end }}
{{- end }}

{{/*
The Secret the chart creates for credentials given as values.
*/}}
{{- define "lucid-gateway.secretName" -}}
{{- include "lucid-gateway.fullname" . }}
{{- end }}

{{- define "lucid-gateway.createSecret" -}}
{{- if or (not .Values.jwt.existingSecret) (and .Values.redis.url (not .Values.redis.existingSecret)) (and .Values.mongodb.uri (not .Values.mongodb.existingSecret)) (and (or .Values.mongodb.uri .Values.mongodb.existingSecret) (not .Values.signin.existingSecret)) -}}
true
{{- end }}
{{- end }}

{{/*
JWT_SECRET_KEY for the chart's Secret, base64-encoded: the given value, else
the one already stored in the cluster (lookup; empty under helm template), else
a fresh random key.
*/}}
{{- define "lucid-gateway.jwtSecretData" -}}
{{- if .Values.jwt.secretKey }}
{{- .Values.jwt.secretKey | b64enc }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "lucid-gateway.secretName" .) }}
{{- $stored := "" }}
{{- if $existing }}{{ $stored = index ($existing.data | default dict) "jwt-secret-key" | default "" }}{{ end }}
{{- $stored | default (randAlphaNum 64 | b64enc) }}
{{- end }}
{{- end }}

{{/*
An env entry from a Secret: (dict "name" "REDIS_URL" "secret" "s" "key" "k").
*/}}
{{- define "lucid-gateway.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}

{{/*
Checksum of the values that end up in the chart's Secret and the routes
ConfigMap: a change rolls the pods (env vars are read at start). The policies
ConfigMap is left out on purpose: the PDP hot-reloads it.
*/}}
{{- define "lucid-gateway.configChecksum" -}}
{{- $v := .Values }}
{{- dict "jwt" $v.jwt "redis" $v.redis "mongodb" $v.mongodb "routes" $v.proxy.routes | toJson | sha256sum }}
{{- end }}

{{/*
Writable /tmp (the root filesystem is read-only).
*/}}
{{- define "lucid-gateway.tmpVolume" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.medium }}
    medium: {{ . }}
    {{- end }}
    {{- with .Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}

{{- define "lucid-gateway.pdpUrl" -}}
{{- printf "http://%s:%v" (include "lucid-gateway.componentFullname" (dict "ctx" . "component" "pdp")) .Values.pdp.service.port }}
{{- end }}

{{/*
The proxy container, shared by the gateway Deployment and the sidecar pod.
*/}}
{{- define "lucid-gateway.proxyContainer" -}}
{{- $p := .Values.proxy -}}
{{- $sidecar := eq .Values.mode "sidecar" -}}
- name: proxy
  image: {{ include "lucid-gateway.image" (dict "image" $p.image "default" .Chart.AppVersion) | quote }}
  imagePullPolicy: {{ $p.image.pullPolicy }}
  {{- if $sidecar }}
  # Sidecar mode: no routes file, one upstream on the pod's loopback.
  args:
    - --upstream
    - {{ printf "http://127.0.0.1:%v" .Values.app.port | quote }}
  {{- end }}
  ports:
    - name: http
      containerPort: {{ $p.httpPort }}
      protocol: TCP
    {{- if $p.tls.enabled }}
    - name: https
      containerPort: {{ $p.httpsPort }}
      protocol: TCP
    {{- end }}
  env:
    - name: SERVICE_NAME
      value: {{ $p.serviceName | default (include "lucid-gateway.componentFullname" (dict "ctx" . "component" "proxy")) | quote }}
    {{- /* Set here by hand (proxy/config.py marks these rows Helm(template=...)); every
           other setting comes from templates/_settings.tpl, generated. */}}
    {{- if $p.tls.enabled }}
    - name: SSL_CERT_PATH
      value: /certs/tls.crt
    - name: SSL_KEY_PATH
      value: /certs/tls.key
    {{- end }}
    - name: PDP_URL
      value: {{ $p.pdp.url | default (include "lucid-gateway.pdpUrl" .) | quote }}
    {{- if $p.pdp.tls.secretName }}
    - name: PDP_CA_FILE
      value: /pdp-tls/ca.crt
    {{- if $p.pdp.tls.clientCert }}
    - name: PDP_CLIENT_CERT
      value: /pdp-tls/tls.crt
    - name: PDP_CLIENT_KEY
      value: /pdp-tls/tls.key
    {{- end }}
    {{- end }}
    {{- with $p.pdp.tls.serverName }}
    - name: PDP_TLS_SERVER_NAME
      value: {{ . | quote }}
    {{- end }}
    {{- /* The PDP's own list: the proxy drops a client's copies of every name a decision may set. */}}
    {{- with (index (.Values.pdp.settings | default dict) "DECISION_HEADER_NAMES") }}
    - name: DECISION_HEADER_NAMES
      value: {{ . | quote }}
    {{- end }}
    {{- if not $sidecar }}
    {{- /* Backend URLs, one variable each, for the routes file's ${VAR}s: no name is built in. */}}
    {{- range $name, $url := $p.backends }}
    - name: {{ $name }}
      value: {{ $url | quote }}
    {{- end }}
    {{- if $p.routes }}
    - name: ROUTES_FILE
      value: /etc/lucid-gateway/routes.yaml
    {{- end }}
    {{- end }}
    # In-flight requests get what is left of the pod's grace period after the
    # preStop sleep, minus a margin for the exit itself.
    - name: GRACE_PERIOD_S
      value: {{ max 1 (sub (sub (int (include "lucid-gateway.proxyTerminationGrace" .)) (int $p.preStopSleepSeconds)) 5) | quote }}
    {{- include "lucid-gateway.proxySettingsEnv" . | trim | nindent 4 }}
    {{- with $p.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $p.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $p.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $p.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if and $p.preStopSleepSeconds (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ $p.preStopSleepSeconds }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml $p.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if $p.tls.enabled }}
    - name: certs
      mountPath: /certs
      readOnly: true
    {{- end }}
    {{- if and $p.routes (not $sidecar) }}
    - name: routes
      mountPath: /etc/lucid-gateway
      readOnly: true
    {{- end }}
    {{- if $p.pdp.tls.secretName }}
    - name: pdp-tls
      mountPath: /pdp-tls
      readOnly: true
    {{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds of the pod the proxy runs in.
*/}}
{{- define "lucid-gateway.proxyTerminationGrace" -}}
{{- if eq .Values.mode "sidecar" }}{{ .Values.app.terminationGracePeriodSeconds }}{{ else }}{{ .Values.proxy.terminationGracePeriodSeconds }}{{ end }}
{{- end }}

{{/*
Volumes the proxy container needs besides /tmp.
*/}}
{{- define "lucid-gateway.proxyVolumes" -}}
{{- if .Values.proxy.tls.enabled }}
- name: certs
  secret:
    secretName: {{ .Values.proxy.tls.secretName }}
{{- end }}
{{- if and .Values.proxy.routes (ne .Values.mode "sidecar") }}
- name: routes
  configMap:
    name: {{ include "lucid-gateway.componentFullname" (dict "ctx" . "component" "routes") }}
{{- end }}
{{- if .Values.proxy.pdp.tls.secretName }}
- name: pdp-tls
  secret:
    secretName: {{ .Values.proxy.pdp.tls.secretName }}
{{- end }}
{{- end }}

{{/*
Pod scheduling fields shared by every Deployment: (dict "v" .Values.pdp).
*/}}
{{- define "lucid-gateway.podScheduling" -}}
{{- with .v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Checks that no schema can express; each fails the render with one clear line.
*/}}
{{- define "lucid-gateway.validate" -}}
{{- if and .Values.proxy.tls.enabled (not .Values.proxy.tls.secretName) }}
{{- fail "proxy.tls.enabled needs proxy.tls.secretName (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (not .Values.app.image.repository) }}
{{- fail "mode: sidecar needs app.image.repository (the application the proxy guards)" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") .Values.app.proxySidecar (or (eq (int .Values.app.port) (int .Values.proxy.httpPort)) (and .Values.proxy.tls.enabled (eq (int .Values.app.port) (int .Values.proxy.httpsPort)))) }}
{{- fail (printf "app.port %v collides with the proxy sidecar's port in the same pod; change app.port or proxy.httpPort" .Values.app.port) }}
{{- end }}
{{- if and .Values.policies.files .Values.policies.existingConfigMap }}
{{- fail "set either policies.files or policies.existingConfigMap, not both" }}
{{- end }}
{{- if and (not (hasPrefix "HS" .Values.jwt.algorithm)) (not .Values.jwt.publicKey) (not .Values.jwt.jwksUrl) }}
{{- fail (printf "jwt.algorithm %s needs jwt.publicKey (PEM) or jwt.jwksUrl" .Values.jwt.algorithm) }}
{{- end }}
{{- if and (contains "HS" .Values.jwt.algorithm) (regexMatch "RS|ES|PS" .Values.jwt.algorithm) }}
{{- fail "jwt.algorithm: do not mix HS* with RS*/ES*/PS* (key confusion)" }}
{{- end }}
{{- if and .Values.proxy.tls.enabled .Values.proxy.tls.redirectHttp (not .Values.proxy.tls.publicHost) }}
{{- fail "proxy.tls.publicHost is required with proxy.tls.redirectHttp" }}
{{- end }}
{{- if and (or .Values.mongodb.uri .Values.mongodb.existingSecret) (not .Values.signin.publicBaseUrl) }}
{{- fail "signin.publicBaseUrl is required with mongodb (links in sign-in mails)" }}
{{- end }}
{{- if and (eq .Values.pdp.engine "opa") (eq (int .Values.pdp.port) (int .Values.pdp.opa.port)) }}
{{- fail "pdp.port and pdp.opa.port collide in the PDP pod" }}
{{- end }}
{{- if and .Values.pdp.grpc.enabled (eq (int .Values.pdp.port) (int .Values.pdp.grpc.port)) }}
{{- fail "pdp.port and pdp.grpc.port collide in the PDP container" }}
{{- end }}
{{- if and .Values.pdp.grpc.enabled (eq .Values.pdp.engine "opa") (eq (int .Values.pdp.grpc.port) (int .Values.pdp.opa.port)) }}
{{- fail "pdp.grpc.port and pdp.opa.port collide in the PDP pod" }}
{{- end }}
{{- $pdpTls := .Values.proxy.pdp.tls }}
{{- if and (or $pdpTls.secretName $pdpTls.serverName $pdpTls.clientCert) (not (hasPrefix "https://" .Values.proxy.pdp.url)) }}
{{- fail "proxy.pdp.tls needs an https:// proxy.pdp.url (the chart's own PDP Service is plain HTTP)" }}
{{- end }}
{{- if and $pdpTls.clientCert (not $pdpTls.secretName) }}
{{- fail "proxy.pdp.tls.clientCert needs proxy.pdp.tls.secretName (a Secret with ca.crt, tls.crt and tls.key)" }}
{{- end }}
{{- end }}
