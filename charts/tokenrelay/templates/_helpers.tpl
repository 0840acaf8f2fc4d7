{{/*
Every helper takes a chart scope: this chart's root context, or, from an app
chart that depends on this one, .Subcharts.tokenrelay (which carries this
chart's .Chart and .Values), so names and labels come out the same either way.
*/}}

{{- define "tokenrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokenrelay.fullname" -}}
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

{{/* A name with a suffix, still at most 63 characters. */}}
{{- define "tokenrelay.suffixed" -}}
{{- $base := include "tokenrelay.fullname" .scope -}}
{{- printf "%s-%s" ($base | trunc (int (sub 62 (len .suffix))) | trimSuffix "-") .suffix -}}
{{- end -}}

{{- define "tokenrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokenrelay.labels" -}}
helm.sh/chart: {{ include "tokenrelay.chart" . }}
app.kubernetes.io/name: {{ include "tokenrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokenrelay
{{- end -}}

{{/* Selector labels of the tokenrelay pods (standalone mode). */}}
{{- define "tokenrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "tokenrelay.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "tokenrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end -}}

{{- define "tokenrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tokenrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tokenrelay.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{- define "tokenrelay.configMapName" -}}
{{- include "tokenrelay.suffixed" (dict "scope" . "suffix" "config") -}}
{{- end -}}

{{- define "tokenrelay.redisName" -}}
{{- include "tokenrelay.suffixed" (dict "scope" . "suffix" "redis") -}}
{{- end -}}

{{/* The Secret the secret files come from: existingSecret or the chart's. */}}
{{- define "tokenrelay.secretName" -}}
{{- default (include "tokenrelay.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/*
File names of the mounted secrets, by role. The path in the container is
fixed per role; only the key in the Secret varies.
*/}}
{{- define "tokenrelay.secretFiles" -}}
{{- toJson (dict "clientSecret" "client-secret" "sessionSecret" "session-secret" "redisPassword" "redis-password" "sentinelPassword" "sentinel-password") -}}
{{- end -}}

{{/*
JSON object role → key in the Secret, for the secrets that exist. Fails when
both chart values and existingSecret are given.
*/}}
{{- define "tokenrelay.secretKeys" -}}
{{- $s := .Values.secrets -}}
{{- $keys := dict -}}
{{- $files := include "tokenrelay.secretFiles" . | fromJson -}}
{{- if $s.existingSecret -}}
{{- range $role := keys $files | sortAlpha -}}
{{- if get $s $role -}}
{{- fail (printf "secrets.%s and secrets.existingSecret are both set: put the value in the existing Secret and name its key in secrets.existingSecretKeys.%s" $role $role) -}}
{{- end -}}
{{- with get $s.existingSecretKeys $role -}}
{{- $_ := set $keys $role . -}}
{{- end -}}
{{- end -}}
{{- else -}}
{{- range $role := keys $files | sortAlpha -}}
{{- if get $s $role -}}
{{- $_ := set $keys $role (get $files $role) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $keys -}}
{{- end -}}

{{/* Whether this chart makes the Secret: "true" or "". */}}
{{- define "tokenrelay.createSecret" -}}
{{- $s := .Values.secrets -}}
{{- if and (not $s.existingSecret) (or $s.clientSecret $s.sessionSecret $s.redisPassword $s.sentinelPassword) -}}
true
{{- end -}}
{{- end -}}

{{/*
Which Redis `redis` values name: "", "url", "sentinel", "cluster" or
"inChart". Fails when more than one is set.
*/}}
{{- define "tokenrelay.redisKind" -}}
{{- $r := .Values.redis -}}
{{- $kinds := list -}}
{{- if $r.url }}{{ $kinds = append $kinds "url" }}{{ end -}}
{{- if $r.sentinel.addresses }}{{ $kinds = append $kinds "sentinel" }}{{ end -}}
{{- if $r.cluster.addresses }}{{ $kinds = append $kinds "cluster" }}{{ end -}}
{{- if $r.inChart.enabled }}{{ $kinds = append $kinds "inChart" }}{{ end -}}
{{- if gt (len $kinds) 1 -}}
{{- fail (printf "redis: set only one of url, sentinel.addresses, cluster.addresses, inChart.enabled (got %s)" (join ", " $kinds)) -}}
{{- end -}}
{{- if and $r.sentinel.addresses (not $r.sentinel.masterName) -}}
{{- fail "redis.sentinel.masterName is required with redis.sentinel.addresses" -}}
{{- end -}}
{{- if and $r.sentinel.masterName (not $r.sentinel.addresses) -}}
{{- fail "redis.sentinel.addresses is required with redis.sentinel.masterName" -}}
{{- end -}}
{{- first $kinds | default "" -}}
{{- end -}}

{{/*
Drops empty strings, nulls, empty lists and empty maps from a map, at every
depth, so the rendered file holds only what was set and the binary's own
defaults apply to the rest. false and 0 are kept: they are values.
*/}}
{{- define "tokenrelay.prune" -}}
{{- $out := dict -}}
{{- range $k, $v := . -}}
{{- if kindIs "map" $v -}}
{{- $p := include "tokenrelay.prune" $v | fromJson -}}
{{- if $p }}{{ $_ := set $out $k $p }}{{ end -}}
{{- else if kindIs "invalid" $v -}}
{{- else if and (kindIs "string" $v) (eq $v "") -}}
{{- else if and (kindIs "slice" $v) (eq (len $v) 0) -}}
{{- else -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The configuration file: .Values.config plus what the chart knows (ports,
mounted secret files, Redis addresses, TLS files), checked for the mistakes
the chart can see. Rendered as YAML.
*/}}
{{- define "tokenrelay.config" -}}
{{- $v := .Values -}}
{{- $cfg := deepCopy $v.config -}}
{{- if not $cfg.public_url -}}
{{- fail "config.public_url is required: the URL browsers use to reach tokenrelay (the redirect URI is public_url + auth_prefix + \"/callback\")" -}}
{{- end -}}
{{- if not $cfg.routes -}}
{{- fail "config.routes needs at least one route, e.g. {path: /api/, upstream: \"http://api:3000\", auth: required}" -}}
{{- end -}}
{{- $_ := set $cfg "listen" (printf ":%d" (int $v.ports.http)) -}}
{{- $_ := set $cfg "admin_listen" (printf ":%d" (int $v.ports.admin)) -}}
{{- if $v.forwardAuth.enabled -}}
{{- $_ := set $cfg "forward_auth" (merge (dict "listen" (printf ":%d" (int $v.ports.forwardAuth))) ($cfg.forward_auth | default dict)) -}}
{{- end -}}
{{- $provider := $cfg.provider | default dict -}}
{{- $session := $cfg.session | default dict -}}
{{- $redis := $session.redis | default dict -}}
{{- $tls := $cfg.tls | default dict -}}

{{- /* Secret files. */ -}}
{{- $keys := include "tokenrelay.secretKeys" . | fromJson -}}
{{- $files := include "tokenrelay.secretFiles" . | fromJson -}}
{{- $dir := trimSuffix "/" $v.secrets.mountPath -}}
{{- $targets := list
      (list "clientSecret" $provider "client_secret_file" "provider.client_secret_file")
      (list "sessionSecret" $session "secret_file" "session.secret_file")
      (list "redisPassword" $redis "password_file" "session.redis.password_file")
      (list "sentinelPassword" $redis "sentinel_password_file" "session.redis.sentinel_password_file") -}}
{{- range $t := $targets -}}
{{- $role := index $t 0 }}{{ $obj := index $t 1 }}{{ $key := index $t 2 -}}
{{- if hasKey $keys $role -}}
{{- if get $obj $key -}}
{{- fail (printf "config.%s is set and secrets.%s is given too: use one" (index $t 3) $role) -}}
{{- end -}}
{{- $_ := set $obj $key (printf "%s/%s" $dir (get $files $role)) -}}
{{- end -}}
{{- end -}}

{{- /* TLS certificate from a kubernetes.io/tls Secret. */ -}}
{{- if $v.tlsSecret -}}
{{- if ne (default "none" $tls.mode) "files" -}}
{{- fail "tlsSecret is set: set config.tls.mode to files" -}}
{{- end -}}
{{- $_ := set $tls "cert_file" "/etc/tokenrelay/tls/tls.crt" -}}
{{- $_ := set $tls "key_file" "/etc/tokenrelay/tls/tls.key" -}}
{{- end -}}

{{- /* Redis. */ -}}
{{- $kind := include "tokenrelay.redisKind" . -}}
{{- $r := $v.redis -}}
{{- if $kind -}}
{{- range $k := list "url" "addresses" "master_name" "cluster" "username" "db" "tls" -}}
{{- if hasKey $redis $k -}}
{{- fail (printf "config.session.redis.%s and redis.* are both set: set the Redis address and user under redis only" $k) -}}
{{- end -}}
{{- end -}}
{{- if eq $kind "url" -}}
{{- $_ := set $redis "url" $r.url -}}
{{- else if eq $kind "inChart" -}}
{{- $_ := set $redis "url" (printf "redis://%s:6379/0" (include "tokenrelay.redisName" .)) -}}
{{- else if eq $kind "sentinel" -}}
{{- $_ := set $redis "addresses" $r.sentinel.addresses -}}
{{- $_ := set $redis "master_name" $r.sentinel.masterName -}}
{{- else if eq $kind "cluster" -}}
{{- $_ := set $redis "addresses" $r.cluster.addresses -}}
{{- $_ := set $redis "cluster" true -}}
{{- end -}}
{{- if $r.username }}{{ $_ := set $redis "username" $r.username }}{{ end -}}
{{- if $r.db }}{{ $_ := set $redis "db" (int $r.db) }}{{ end -}}
{{- if $r.tls }}{{ $_ := set $redis "tls" true }}{{ end -}}
{{- end -}}
{{- $store := $session.store | default (ternary "redis" "memory" (or (ne $kind "") (hasKey $redis "url") (hasKey $redis "addresses"))) -}}
{{- if and (eq $store "memory") $kind -}}
{{- fail (printf "config.session.store is memory but redis (%s) is configured: remove one" $kind) -}}
{{- end -}}
{{- if and (eq $store "redis") (not $redis.url) (not $redis.addresses) -}}
{{- fail "config.session.store is redis: set redis.url, redis.sentinel, redis.cluster or redis.inChart.enabled" -}}
{{- end -}}
{{- $envNames := list -}}
{{- range $v.extraEnv }}{{ $envNames = append $envNames .name }}{{ end -}}
{{- $secretFromEnv := or (has "TOKENRELAY_SESSION_SECRET" $envNames) (has "TOKENRELAY_SESSION_SECRET_FILE" $envNames) -}}
{{- if and (eq $store "redis") (not $session.secret_file) (not $secretFromEnv) -}}
{{- fail "the Redis session store needs a session secret shared by every replica: set secrets.sessionSecret (tokenrelay gen-secret) or secrets.existingSecret with existingSecretKeys.sessionSecret" -}}
{{- end -}}
{{- if and (eq $store "memory") (eq $v.mode "standalone") -}}
{{- if or (gt (int $v.replicaCount) 1) (and $v.autoscaling.enabled (gt (int $v.autoscaling.maxReplicas) 1)) -}}
{{- fail "the memory session store keeps sessions inside one pod, so with more than one replica a user's next request may land on a pod that does not know the session: use replicaCount 1 without autoscaling, or the Redis store (redis.url, redis.sentinel, redis.cluster)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.secrets.sessionSecret (lt (len $v.secrets.sessionSecret) 32) -}}
{{- fail "secrets.sessionSecret must be at least 32 bytes (tokenrelay gen-secret prints one)" -}}
{{- end -}}
{{- $_ := set $session "store" $store -}}

{{- $_ := set $session "redis" $redis -}}
{{- $_ := set $cfg "session" $session -}}
{{- $_ := set $cfg "provider" $provider -}}
{{- $_ := set $cfg "tls" $tls -}}
{{- include "tokenrelay.prune" $cfg | fromJson | toYaml -}}
{{- end -}}

{{/* Pod annotations that roll the pods when the configuration or the chart's Secret changes. */}}
{{- define "tokenrelay.checksumAnnotations" -}}
checksum/tokenrelay-config: {{ include "tokenrelay.config" . | sha256sum }}
{{- if include "tokenrelay.createSecret" . }}
checksum/tokenrelay-secret: {{ include "tokenrelay.secretData" . | sha256sum }}
{{- end }}
{{- end -}}

{{/* The data of the chart-made Secret (base64 values). */}}
{{- define "tokenrelay.secretData" -}}
{{- $s := .Values.secrets -}}
{{- $files := include "tokenrelay.secretFiles" . | fromJson -}}
{{- range $role := keys $files | sortAlpha }}
{{- with get $s $role }}
{{ get $files $role }}: {{ . | b64enc | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Mode of the mounted secret files. 0440 is enough when the pod's fsGroup (the
chart's podSecurityContext, standalone) owns them; in an app's pod the
fsGroup is unknown, so the files are world-readable inside the one container
that mounts them.
*/}}
{{- define "tokenrelay.secretFileMode" -}}
{{- if and (eq .Values.mode "standalone") (dig "fsGroup" nil (.Values.podSecurityContext | default dict)) -}}
288
{{- else -}}
292
{{- end -}}
{{- end -}}

{{/* Volumes the tokenrelay container mounts: a list of Volume items. */}}
{{- define "tokenrelay.volumes" -}}
- name: tokenrelay-config
  configMap:
    name: {{ include "tokenrelay.configMapName" . }}
    items:
      - key: config.yaml
        path: config.yaml
{{- $keys := include "tokenrelay.secretKeys" . | fromJson }}
{{- $files := include "tokenrelay.secretFiles" . | fromJson }}
{{- if $keys }}
- name: tokenrelay-secrets
  secret:
    secretName: {{ include "tokenrelay.secretName" . }}
    defaultMode: {{ include "tokenrelay.secretFileMode" . }}
    items:
      {{- range $role := keys $keys | sortAlpha }}
      - key: {{ get $keys $role }}
        path: {{ get $files $role }}
      {{- end }}
{{- end }}
{{- if .Values.tlsSecret }}
- name: tokenrelay-tls
  secret:
    secretName: {{ .Values.tlsSecret }}
    defaultMode: {{ include "tokenrelay.secretFileMode" . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The tokenrelay container: one item of a containers (or initContainers)
list. Takes (dict "scope" <chart scope> "name" <container name> "native"
<bool> "portNames" (dict "http" <name> "admin" <name> "forwardAuth"
<name>)); native adds restartPolicy Always (a Kubernetes native sidecar).
The forward-auth port is there with forwardAuth.enabled.
*/}}
{{- define "tokenrelay.container" -}}
{{- $s := .scope -}}
{{- $v := $s.Values -}}
{{- $ports := .portNames -}}
- name: {{ .name }}
  image: {{ include "tokenrelay.image" $s | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args: ["serve", "--config", "/etc/tokenrelay/config.yaml"]
  ports:
    - name: {{ $ports.http }}
      containerPort: {{ $v.ports.http }}
      protocol: TCP
    - name: {{ $ports.admin }}
      containerPort: {{ $v.ports.admin }}
      protocol: TCP
    {{- if $v.forwardAuth.enabled }}
    - name: {{ $ports.forwardAuth }}
      containerPort: {{ $v.ports.forwardAuth }}
      protocol: TCP
    {{- end }}
  {{- $memLimit := dig "limits" "memory" "" ($v.resources | default dict) }}
  {{- if or $v.extraEnv (and $v.setGoMemLimit $memLimit) }}
  env:
    {{- if and $v.setGoMemLimit $memLimit }}
    # containerName is left out: for an env var it means this container.
    - name: GOMEMLIMIT
      valueFrom:
        resourceFieldRef:
          resource: limits.memory
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  volumeMounts:
    - name: tokenrelay-config
      mountPath: /etc/tokenrelay/config.yaml
      subPath: config.yaml
      readOnly: true
    {{- if include "tokenrelay.secretKeys" $s | fromJson }}
    - name: tokenrelay-secrets
      mountPath: {{ $v.secrets.mountPath }}
      readOnly: true
    {{- end }}
    {{- if $v.tlsSecret }}
    - name: tokenrelay-tls
      mountPath: /etc/tokenrelay/tls
      readOnly: true
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- range $probe := list "startupProbe" "livenessProbe" "readinessProbe" }}
  {{- with get $v $probe }}
  {{ $probe }}:
    {{- include "tokenrelay.probe" (dict "probe" . "admin" $ports.admin) | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* A probe whose port "admin" is renamed to the container's admin port name. */}}
{{- define "tokenrelay.probe" -}}
{{- $p := deepCopy .probe -}}
{{- if and $p.httpGet (eq (toString $p.httpGet.port) "admin") -}}
{{- $_ := set $p.httpGet "port" .admin -}}
{{- end -}}
{{- toYaml $p -}}
{{- end -}}
