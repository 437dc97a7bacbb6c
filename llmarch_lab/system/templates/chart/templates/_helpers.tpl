{{- define "sys.labels" -}}
app.kubernetes.io/part-of: {{ .Values.system }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
