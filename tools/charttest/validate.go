package charttest

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// External names objects the release uses but does not render (an
// existingSecret, a TLS Secret): "Secret/name" or "ConfigMap/name".
type External map[string]bool

// Validate checks what strict decoding cannot: names and labels the API
// server would refuse, and references between objects (volumes → ConfigMaps
// and Secrets and their keys, probes and Services → container ports,
// selectors → pods, Ingress → Service, HPA → Deployment). It returns every
// problem found.
func Validate(objs []Object, ext External) []string {
	v := &validator{objs: objs, ext: ext}
	v.run()
	return v.problems
}

type validator struct {
	objs     []Object
	ext      External
	problems []string
}

func (v *validator) addf(format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf(format, args...))
}

func (v *validator) find(kind, name string) (Object, bool) {
	for _, o := range v.objs {
		if o.Kind == kind && o.Meta.Name == name {
			return o, true
		}
	}
	return Object{}, false
}

// pods lists the pod templates of the rendered workloads.
func (v *validator) pods() map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range v.objs {
		if d, ok := o.Obj.(*appsv1.Deployment); ok {
			out[o.Key()] = &d.Spec.Template
		}
	}
	return out
}

func (v *validator) run() {
	seen := map[string]bool{}
	for _, o := range v.objs {
		if seen[o.Key()] {
			v.addf("%s: rendered twice", o.Key())
		}
		seen[o.Key()] = true
		v.meta(o.Key(), o.Meta, o.Kind == "Service")
		switch obj := o.Obj.(type) {
		case *appsv1.Deployment:
			v.deployment(o.Key(), obj)
		case *corev1.Service:
			v.service(o.Key(), obj)
		case *networkingv1.Ingress:
			v.ingress(o.Key(), obj)
		case *policyv1.PodDisruptionBudget:
			v.selects(o.Key(), obj.Spec.Selector)
		case *networkingv1.NetworkPolicy:
			v.selects(o.Key(), &obj.Spec.PodSelector)
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := obj.Spec.ScaleTargetRef
			if _, ok := v.find(ref.Kind, ref.Name); !ok || ref.APIVersion != "apps/v1" {
				v.addf("%s: scaleTargetRef %s/%s %s is not rendered", o.Key(), ref.Kind, ref.Name, ref.APIVersion)
			}
			if obj.Spec.MinReplicas != nil && *obj.Spec.MinReplicas > obj.Spec.MaxReplicas {
				v.addf("%s: minReplicas %d > maxReplicas %d", o.Key(), *obj.Spec.MinReplicas, obj.Spec.MaxReplicas)
			}
		case *monitoringv1.ServiceMonitor:
			v.serviceMonitor(o.Key(), obj)
		}
	}
}

func (v *validator) meta(where string, m metav1.ObjectMeta, dns1035 bool) {
	if dns1035 {
		for _, e := range validation.IsDNS1035Label(m.Name) {
			v.addf("%s: name: %s", where, e)
		}
	} else {
		for _, e := range validation.IsDNS1123Subdomain(m.Name) {
			v.addf("%s: name: %s", where, e)
		}
	}
	if m.Namespace != ReleaseNamespace {
		v.addf("%s: namespace %q, want %q", where, m.Namespace, ReleaseNamespace)
	}
	v.labels(where+": label", m.Labels)
	for k := range m.Annotations {
		for _, e := range validation.IsQualifiedName(k) {
			v.addf("%s: annotation %q: %s", where, k, e)
		}
	}
}

func (v *validator) labels(where string, l map[string]string) {
	for k, val := range l {
		for _, e := range validation.IsQualifiedName(k) {
			v.addf("%s %q: %s", where, k, e)
		}
		for _, e := range validation.IsValidLabelValue(val) {
			v.addf("%s %q value %q: %s", where, k, val, e)
		}
	}
}

func (v *validator) deployment(where string, d *appsv1.Deployment) {
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
		v.addf("%s: no selector", where)
		return
	}
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		v.addf("%s: selector %v does not match template labels %v", where, d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	v.labels(where+": pod label", d.Spec.Template.Labels)
	for k := range d.Spec.Template.Annotations {
		for _, e := range validation.IsQualifiedName(k) {
			v.addf("%s: pod annotation %q: %s", where, k, e)
		}
	}
	v.podSpec(where, &d.Spec.Template.Spec)
}

func (v *validator) podSpec(where string, ps *corev1.PodSpec) {
	volumes := map[string]corev1.Volume{}
	for _, vol := range ps.Volumes {
		for _, e := range validation.IsDNS1123Label(vol.Name) {
			v.addf("%s: volume %q: %s", where, vol.Name, e)
		}
		if _, dup := volumes[vol.Name]; dup {
			v.addf("%s: volume %q twice", where, vol.Name)
		}
		volumes[vol.Name] = vol
		v.volumeSource(where, vol)
	}
	names := map[string]bool{}
	portNames := map[string]bool{}
	portNumbers := map[int32]bool{}
	check := func(c corev1.Container, init bool) {
		cw := fmt.Sprintf("%s: container %q", where, c.Name)
		for _, e := range validation.IsDNS1123Label(c.Name) {
			v.addf("%s: name: %s", cw, e)
		}
		if names[c.Name] {
			v.addf("%s: name used twice in the pod", cw)
		}
		names[c.Name] = true
		if c.Image == "" {
			v.addf("%s: no image", cw)
		}
		switch {
		case c.RestartPolicy != nil && !init:
			v.addf("%s: restartPolicy is only allowed on init containers", cw)
		case c.RestartPolicy != nil && *c.RestartPolicy != corev1.ContainerRestartPolicyAlways:
			v.addf("%s: restartPolicy %q, only Always is allowed", cw, *c.RestartPolicy)
		}
		own := map[string]bool{}
		for _, p := range c.Ports {
			for _, e := range validation.IsValidPortName(p.Name) {
				v.addf("%s: port name %q: %s", cw, p.Name, e)
			}
			for _, e := range validation.IsValidPortNum(int(p.ContainerPort)) {
				v.addf("%s: port %d: %s", cw, p.ContainerPort, e)
			}
			if portNames[p.Name] {
				v.addf("%s: port name %q used twice in the pod", cw, p.Name)
			}
			if portNumbers[p.ContainerPort] {
				v.addf("%s: port %d used twice in the pod", cw, p.ContainerPort)
			}
			portNames[p.Name], portNumbers[p.ContainerPort], own[p.Name] = true, true, true
		}
		for name, pr := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
			if pr == nil {
				continue
			}
			var port intstr.IntOrString
			switch {
			case pr.HTTPGet != nil:
				port = pr.HTTPGet.Port
			case pr.TCPSocket != nil:
				port = pr.TCPSocket.Port
			default:
				continue
			}
			if port.Type == intstr.String && !own[port.StrVal] {
				v.addf("%s: %s port %q is not a port of the container", cw, name, port.StrVal)
			}
		}
		for _, m := range c.VolumeMounts {
			if _, ok := volumes[m.Name]; !ok {
				v.addf("%s: volumeMount %q has no volume", cw, m.Name)
			}
			if !strings.HasPrefix(m.MountPath, "/") {
				v.addf("%s: volumeMount %q: mountPath %q is not absolute", cw, m.Name, m.MountPath)
			}
		}
		for _, e := range c.Env {
			for _, msg := range validation.IsEnvVarName(e.Name) {
				v.addf("%s: env %q: %s", cw, e.Name, msg)
			}
			if e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.ContainerName != "" && e.ValueFrom.ResourceFieldRef.ContainerName != c.Name {
				v.addf("%s: env %q: resourceFieldRef names container %q", cw, e.Name, e.ValueFrom.ResourceFieldRef.ContainerName)
			}
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				v.key(cw+": env "+e.Name, "Secret", e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}
	for _, c := range ps.InitContainers {
		check(c, true)
	}
	for _, c := range ps.Containers {
		check(c, false)
	}
	if len(ps.Containers) == 0 {
		v.addf("%s: no containers", where)
	}
	if ps.ServiceAccountName != "" && ps.ServiceAccountName != "default" {
		if _, ok := v.find("ServiceAccount", ps.ServiceAccountName); !ok {
			v.addf("%s: serviceAccountName %q is not rendered", where, ps.ServiceAccountName)
		}
	}
}

func (v *validator) volumeSource(where string, vol corev1.Volume) {
	switch {
	case vol.ConfigMap != nil:
		for _, it := range vol.ConfigMap.Items {
			v.key(where+": volume "+vol.Name, "ConfigMap", vol.ConfigMap.Name, it.Key)
		}
		if len(vol.ConfigMap.Items) == 0 {
			v.key(where+": volume "+vol.Name, "ConfigMap", vol.ConfigMap.Name, "")
		}
	case vol.Secret != nil:
		for _, it := range vol.Secret.Items {
			v.key(where+": volume "+vol.Name, "Secret", vol.Secret.SecretName, it.Key)
		}
		if len(vol.Secret.Items) == 0 {
			v.key(where+": volume "+vol.Name, "Secret", vol.Secret.SecretName, "")
		}
	}
}

// key checks that kind/name is rendered (or declared external) and, when
// rendered and key is not "", holds key.
func (v *validator) key(where, kind, name, key string) {
	o, ok := v.find(kind, name)
	if !ok {
		if !v.ext[kind+"/"+name] {
			v.addf("%s: %s %q is neither rendered nor external", where, kind, name)
		}
		return
	}
	if key == "" {
		return
	}
	var has bool
	switch obj := o.Obj.(type) {
	case *corev1.ConfigMap:
		_, has = obj.Data[key]
	case *corev1.Secret:
		_, has = obj.Data[key]
		if !has {
			_, has = obj.StringData[key]
		}
	}
	if !has {
		v.addf("%s: %s %q has no key %q", where, kind, name, key)
	}
}

// podsSelected returns the pod templates whose labels match sel.
func (v *validator) podsSelected(sel map[string]string) []*corev1.PodTemplateSpec {
	var out []*corev1.PodTemplateSpec
	pods := v.pods()
	for _, k := range slices.Sorted(maps.Keys(pods)) {
		if subset(sel, pods[k].Labels) {
			out = append(out, pods[k])
		}
	}
	return out
}

func (v *validator) selects(where string, sel *metav1.LabelSelector) {
	if sel == nil || len(sel.MatchLabels) == 0 {
		v.addf("%s: empty selector", where)
		return
	}
	if len(v.podsSelected(sel.MatchLabels)) == 0 {
		v.addf("%s: selector %v matches no rendered pod", where, sel.MatchLabels)
	}
}

func (v *validator) service(where string, s *corev1.Service) {
	pods := v.podsSelected(s.Spec.Selector)
	if len(s.Spec.Selector) == 0 || len(pods) == 0 {
		v.addf("%s: selector %v matches no rendered pod", where, s.Spec.Selector)
		return
	}
	for _, p := range s.Spec.Ports {
		for _, e := range validation.IsValidPortName(p.Name) {
			v.addf("%s: port name %q: %s", where, p.Name, e)
		}
		if p.TargetPort.Type != intstr.String {
			continue
		}
		for _, pod := range pods {
			if !hasPortName(&pod.Spec, p.TargetPort.StrVal) {
				v.addf("%s: targetPort %q is not a port of the selected pod", where, p.TargetPort.StrVal)
			}
		}
	}
}

func hasPortName(ps *corev1.PodSpec, name string) bool {
	for _, c := range slices.Concat(ps.InitContainers, ps.Containers) {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func (v *validator) servicePort(where, svcName string, port networkingv1.ServiceBackendPort) {
	o, ok := v.find("Service", svcName)
	if !ok {
		v.addf("%s: Service %q is not rendered", where, svcName)
		return
	}
	for _, p := range o.Obj.(*corev1.Service).Spec.Ports {
		if (port.Name != "" && p.Name == port.Name) || (port.Name == "" && p.Port == port.Number) {
			return
		}
	}
	v.addf("%s: Service %q has no port %v", where, svcName, port)
}

func (v *validator) ingress(where string, ing *networkingv1.Ingress) {
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, p := range r.HTTP.Paths {
			if p.PathType == nil {
				v.addf("%s: path %q has no pathType", where, p.Path)
			}
			if p.Backend.Service == nil {
				v.addf("%s: path %q has no service backend", where, p.Path)
				continue
			}
			v.servicePort(where, p.Backend.Service.Name, p.Backend.Service.Port)
		}
	}
}

func (v *validator) serviceMonitor(where string, sm *monitoringv1.ServiceMonitor) {
	var svcs []*corev1.Service
	for _, o := range v.objs {
		if s, ok := o.Obj.(*corev1.Service); ok && subset(sm.Spec.Selector.MatchLabels, o.Meta.Labels) {
			svcs = append(svcs, s)
		}
	}
	if len(sm.Spec.Selector.MatchLabels) == 0 || len(svcs) == 0 {
		v.addf("%s: selector %v matches no rendered Service", where, sm.Spec.Selector.MatchLabels)
		return
	}
	for _, ep := range sm.Spec.Endpoints {
		if ep.Port == "" {
			v.addf("%s: endpoint without a port name", where)
			continue
		}
		for _, s := range svcs {
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				v.addf("%s: Service %q has no port %q", where, s.Name, ep.Port)
			}
		}
	}
}

func subset(sel, labels map[string]string) bool {
	for k, val := range sel {
		if labels[k] != val {
			return false
		}
	}
	return true
}
