{{/*
Templates for an app chart that runs tokenrelay as a sidecar in its own pods.
The app chart depends on this chart (with tokenrelay.mode: sidecar in its
values, so this chart renders only the ConfigMap and Secret) and includes,
passing this chart's scope:

  spec:
    template:
      metadata:
        annotations:
          {{- include "tokenrelay.sidecarPodAnnotations" .Subcharts.tokenrelay | nindent 10 }}
      spec:
        {{- with include "tokenrelay.sidecarInitContainer" .Subcharts.tokenrelay }}
        initContainers:
          {{- . | nindent 10 }}
        {{- end }}
        containers:
          - name: app
            ...
          {{- include "tokenrelay.sidecar" .Subcharts.tokenrelay | nindent 10 }}
        volumes:
          {{- include "tokenrelay.sidecarVolumes" .Subcharts.tokenrelay | nindent 10 }}

The container's ports are named "tokenrelay" (traffic) and "tokenrelay-adm"
(admin), so they do not clash with the app's "http". Point the app's Service
at port "tokenrelay" and route tokenrelay to the app on 127.0.0.1.
*/}}

{{- define "tokenrelay.sidecarPortNames" -}}
{{- toJson (dict "http" "tokenrelay" "admin" "tokenrelay-adm" "forwardAuth" "tokenrelay-fa") -}}
{{- end -}}

{{- define "tokenrelay.assertSidecar" -}}
{{- if ne .Values.mode "sidecar" -}}
{{- fail "the tokenrelay sidecar templates need mode: sidecar in tokenrelay's values (tokenrelay.mode in the app chart), or the tokenrelay chart would also render a standalone Deployment" -}}
{{- end -}}
{{- end -}}

{{/* The tokenrelay item for the pod's containers list; empty with sidecar.native. */}}
{{- define "tokenrelay.sidecar" -}}
{{- include "tokenrelay.assertSidecar" . -}}
{{- if not .Values.sidecar.native -}}
{{- include "tokenrelay.container" (dict "scope" . "name" .Values.sidecar.containerName "native" false "portNames" (include "tokenrelay.sidecarPortNames" . | fromJson)) -}}
{{- end -}}
{{- end -}}

{{/* The tokenrelay item for the pod's initContainers list; empty without sidecar.native. */}}
{{- define "tokenrelay.sidecarInitContainer" -}}
{{- include "tokenrelay.assertSidecar" . -}}
{{- if .Values.sidecar.native -}}
{{- if not (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version) -}}
{{- fail (printf "sidecar.native needs Kubernetes 1.29 or newer (native sidecar containers); the target is %s (helm template assumes an old version unless given --kube-version)" .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- include "tokenrelay.container" (dict "scope" . "name" .Values.sidecar.containerName "native" true "portNames" (include "tokenrelay.sidecarPortNames" . | fromJson)) -}}
{{- end -}}
{{- end -}}

{{/* Items for the pod's volumes list. */}}
{{- define "tokenrelay.sidecarVolumes" -}}
{{- include "tokenrelay.assertSidecar" . -}}
{{- include "tokenrelay.volumes" . -}}
{{- end -}}

{{/* Pod annotations (checksums) that roll the app's pods when tokenrelay's configuration changes. */}}
{{- define "tokenrelay.sidecarPodAnnotations" -}}
{{- include "tokenrelay.assertSidecar" . -}}
{{- include "tokenrelay.checksumAnnotations" . -}}
{{- end -}}
