{{- define "galley.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "galley.labels" -}}
app.kubernetes.io/name: galley
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "galley.selector" -}}
app.kubernetes.io/name: galley
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The operator's permissions: the same rules as galley/operator/rbac.py (a test keeps them equal). */}}
{{- define "galley.rules" -}}
- apiGroups: [galley.dev]
  resources: [trainingjobs, models, onlineservices]
  verbs: [get, list, watch]
- apiGroups: [galley.dev]
  resources: [trainingjobs/status, models/status, onlineservices/status]
  verbs: [get, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, create, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices]
  verbs: [get, create, patch, delete]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}


{{/* The console's permissions: the same rules as galley/console/rbac.py (a test keeps them equal). */}}
{{- define "galley.consoleRules" -}}
- apiGroups: [galley.dev]
  resources: [trainingjobs, models, onlineservices]
  verbs: [get, list, create]
- apiGroups: [galley.dev]
  resources: [onlineservices]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [list]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end -}}
