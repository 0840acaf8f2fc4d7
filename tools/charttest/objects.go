package charttest

import (
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Object is one decoded manifest: its API version and kind, its metadata,
// and the typed object (*appsv1.Deployment, *corev1.Service, ...).
type Object struct {
	APIVersion string
	Kind       string
	Meta       metav1.ObjectMeta
	Obj        any
	// Source is the manifest text it came from.
	Source string
}

// Key is "Kind/name".
func (o Object) Key() string { return o.Kind + "/" + o.Meta.Name }

// kinds lists every kind the charts may render, with its typed object. A
// kind outside this list is an error: a new kind needs a type to be
// validated against.
var kinds = map[string]func() (any, *metav1.ObjectMeta){
	"v1/ConfigMap": func() (any, *metav1.ObjectMeta) {
		o := &corev1.ConfigMap{}
		return o, &o.ObjectMeta
	},
	"v1/Secret": func() (any, *metav1.ObjectMeta) {
		o := &corev1.Secret{}
		return o, &o.ObjectMeta
	},
	"v1/Service": func() (any, *metav1.ObjectMeta) {
		o := &corev1.Service{}
		return o, &o.ObjectMeta
	},
	"v1/ServiceAccount": func() (any, *metav1.ObjectMeta) {
		o := &corev1.ServiceAccount{}
		return o, &o.ObjectMeta
	},
	"apps/v1/Deployment": func() (any, *metav1.ObjectMeta) {
		o := &appsv1.Deployment{}
		return o, &o.ObjectMeta
	},
	"networking.k8s.io/v1/Ingress": func() (any, *metav1.ObjectMeta) {
		o := &networkingv1.Ingress{}
		return o, &o.ObjectMeta
	},
	"networking.k8s.io/v1/NetworkPolicy": func() (any, *metav1.ObjectMeta) {
		o := &networkingv1.NetworkPolicy{}
		return o, &o.ObjectMeta
	},
	"policy/v1/PodDisruptionBudget": func() (any, *metav1.ObjectMeta) {
		o := &policyv1.PodDisruptionBudget{}
		return o, &o.ObjectMeta
	},
	"autoscaling/v2/HorizontalPodAutoscaler": func() (any, *metav1.ObjectMeta) {
		o := &autoscalingv2.HorizontalPodAutoscaler{}
		return o, &o.ObjectMeta
	},
	"monitoring.coreos.com/v1/ServiceMonitor": func() (any, *metav1.ObjectMeta) {
		o := &monitoringv1.ServiceMonitor{}
		return o, &o.ObjectMeta
	},
}

// decodeManifests decodes every document of a rendered template strictly:
// an unknown or misspelt field, a duplicate key or a value of the wrong type
// is an error, as `kubectl apply --validate=strict` would report.
func decodeManifests(text string) ([]Object, error) {
	var out []Object
	for _, doc := range splitDocs(text) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("not YAML: %w\n%s", err, doc)
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("unexpected kind %s %s", tm.APIVersion, tm.Kind)
		}
		obj, meta := newObj()
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			return nil, fmt.Errorf("%s: strict decoding: %w\n%s", tm.Kind, err, doc)
		}
		out = append(out, Object{APIVersion: tm.APIVersion, Kind: tm.Kind, Meta: *meta, Obj: obj, Source: doc})
	}
	return out, nil
}
