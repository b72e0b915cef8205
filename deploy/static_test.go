// Package deploy_test checks the deployment files under deploy/: the
// systemd unit with systemd-analyze, the Kubernetes manifests rendered and
// converted by kubectl (no cluster needed), the Prometheus rules with
// promtool, the Grafana dashboard, and the metric names both use against
// the names the node's code registers. These checks are quick and run in
// the default `go test`; each skips when its tool is missing.
//
// compose_test.go brings the compose cluster up for real; it runs only with
// EDGENODE_DEPLOY_TEST=1 (make deploy-test).
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// pendingMetrics are metric names the dashboard and alerts use before the
// node exports them (being added by another change).
var pendingMetrics = map[string]bool{}

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed", tool)
	}
	return p
}

func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}

// ---- systemd ----

func TestSystemdUnit(t *testing.T) {
	need(t, "systemd-analyze")
	unit, err := os.ReadFile("systemd/edgenode.service")
	if err != nil {
		t.Fatal(err)
	}
	directives := map[string][]string{}
	for _, line := range strings.Split(string(unit), "\n") {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			directives[k] = append(directives[k], v)
		}
	}
	for k, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "DynamicUser": "yes", "StateDirectory": "edgenode", "KillSignal": "SIGTERM",
	} {
		if got := directives[k]; !slices.Contains(got, want) {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	if n, err := strconv.Atoi(strings.Join(directives["LimitNOFILE"], "")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%v: want a number of at least 65536 (one file per socket)", directives["LimitNOFILE"])
	}
	if len(directives["EnvironmentFile"]) == 0 {
		t.Error("no EnvironmentFile")
	}
	if got := directives["ExecStart"]; len(got) != 1 || got[0] != "/usr/local/bin/edgenode" {
		t.Fatalf("ExecStart=%v, want /usr/local/bin/edgenode", got)
	}
	// systemd-analyze verify insists that ExecStart's file exists; this
	// machine has no installed edgenode, so point it at an executable that
	// exists (this test binary) and verify everything else as written.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	verified := strings.Replace(string(unit), "ExecStart=/usr/local/bin/edgenode", "ExecStart="+self, 1)
	path := filepath.Join(dir, "edgenode.service")
	if err := os.WriteFile(path, []byte(verified), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", path)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// ---- Kubernetes ----

type k8sObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

// k8sObjects converts YAML manifests to objects with kubectl alone (no
// cluster): `annotate --local` parses, defaults nothing, and prints JSON.
func k8sObjects(t *testing.T, yaml []byte) []k8sObject {
	t.Helper()
	out := run(t, yaml, "kubectl", "annotate", "--local", "-f", "-", "-o", "json", "edgenode.io/checked=true")
	var objs []k8sObject
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kubectl output: %v", err)
		}
		objs = append(objs, o)
	}
	return objs
}

type probe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name, Key string
			Optional  bool `json:"optional"`
		} `json:"secretKeyRef"`
		FieldRef *struct {
			FieldPath string `json:"fieldPath"`
		} `json:"fieldRef"`
	} `json:"valueFrom"`
}

type statefulSetSpec struct {
	ServiceName         string `json:"serviceName"`
	Replicas            int    `json:"replicas"`
	PodManagementPolicy string `json:"podManagementPolicy"`
	Selector            struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Template struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			SecurityContext struct {
				RunAsNonRoot *bool `json:"runAsNonRoot"`
				FSGroup      int   `json:"fsGroup"`
			} `json:"securityContext"`
			Affinity struct {
				NodeAffinity struct {
					Required struct {
						Terms []struct {
							MatchExpressions []struct {
								Key    string   `json:"key"`
								Values []string `json:"values"`
							} `json:"matchExpressions"`
						} `json:"nodeSelectorTerms"`
					} `json:"requiredDuringSchedulingIgnoredDuringExecution"`
				} `json:"nodeAffinity"`
			} `json:"affinity"`
			Containers []struct {
				Image          string   `json:"image"`
				Env            []envVar `json:"env"`
				ReadinessProbe *probe   `json:"readinessProbe"`
				LivenessProbe  *probe   `json:"livenessProbe"`
				Ports          []struct {
					ContainerPort int    `json:"containerPort"`
					Protocol      string `json:"protocol"`
				} `json:"ports"`
				VolumeMounts []struct {
					Name      string `json:"name"`
					MountPath string `json:"mountPath"`
				} `json:"volumeMounts"`
			} `json:"containers"`
		} `json:"spec"`
	} `json:"template"`
	VolumeClaimTemplates []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	} `json:"volumeClaimTemplates"`
}

type serviceSpec struct {
	ClusterIP                string `json:"clusterIP"`
	PublishNotReadyAddresses bool   `json:"publishNotReadyAddresses"`
	Selector                 map[string]string
	Ports                    []struct {
		Port     int    `json:"port"`
		Protocol string `json:"protocol"`
	} `json:"ports"`
}

func TestKubernetesManifests(t *testing.T) {
	need(t, "kubectl")
	rendered := run(t, nil, "kubectl", "kustomize", "kubernetes")
	objs := k8sObjects(t, rendered)
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}

	// The Secret is an example applied on its own (never by apply -k).
	secretYAML, err := os.ReadFile("kubernetes/secret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	secrets := k8sObjects(t, secretYAML)
	if len(secrets) != 1 || secrets[0].Kind != "Secret" || secrets[0].Metadata.Name != "edgenode-cluster" {
		t.Fatalf("secret.yaml: want one Secret edgenode-cluster, got %+v", secrets)
	}
	var secret struct {
		StringData map[string]string `json:"stringData"`
	}
	if err := json.Unmarshal(mustJSON(t, secretYAML), &secret); err != nil || secret.StringData["cluster-secret"] == "" {
		t.Fatalf("secret.yaml has no stringData.cluster-secret (%v)", err)
	}
	// A node of a cluster refuses to start without a JWT key.
	if secret.StringData["jwt-secret"] == "" {
		t.Fatal("secret.yaml has no stringData.jwt-secret: the nodes would refuse to start")
	}

	// Services: a headless one for gossip and QUIC, a client one.
	var headless, client *serviceSpec
	for _, o := range byKind["Service"] {
		var s serviceSpec
		if err := json.Unmarshal(o.Spec, &s); err != nil {
			t.Fatal(err)
		}
		if s.ClusterIP == "None" {
			headless = &s
			if o.Metadata.Name != "edgenode-peers" {
				t.Errorf("headless service is %q, want edgenode-peers", o.Metadata.Name)
			}
		} else {
			client = &s
		}
	}
	if headless == nil || client == nil {
		t.Fatalf("want a headless and a client Service, got %d services", len(byKind["Service"]))
	}
	if !headless.PublishNotReadyAddresses {
		t.Error("the headless service must publish not-ready pods: they join each other before /readyz holds")
	}
	hasPort := func(s *serviceSpec, port int, proto string) bool {
		for _, p := range s.Ports {
			if p.Port == port && p.Protocol == proto {
				return true
			}
		}
		return false
	}
	for _, pp := range []struct {
		port  int
		proto string
	}{{7946, "TCP"}, {7946, "UDP"}, {7947, "UDP"}} {
		if !hasPort(headless, pp.port, pp.proto) {
			t.Errorf("headless service lacks %d/%s", pp.port, pp.proto)
		}
	}
	if len(client.Ports) == 0 {
		t.Error("client service has no port")
	}

	// PodDisruptionBudget: one pod at a time.
	if len(byKind["PodDisruptionBudget"]) != 1 {
		t.Fatalf("want one PodDisruptionBudget, got %d", len(byKind["PodDisruptionBudget"]))
	}
	var pdb struct {
		MaxUnavailable any `json:"maxUnavailable"`
		Selector       struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
	}
	json.Unmarshal(byKind["PodDisruptionBudget"][0].Spec, &pdb)
	if pdb.MaxUnavailable != float64(1) || pdb.Selector.MatchLabels["app.kubernetes.io/name"] != "edgenode" {
		t.Errorf("PDB: maxUnavailable %v selector %v, want 1 over every edgenode pod", pdb.MaxUnavailable, pdb.Selector.MatchLabels)
	}

	// One StatefulSet per region.
	regions := map[string]bool{}
	total := 0
	var expects []string
	for _, o := range byKind["StatefulSet"] {
		var s statefulSetSpec
		if err := json.Unmarshal(o.Spec, &s); err != nil {
			t.Fatal(err)
		}
		name := o.Metadata.Name
		total += s.Replicas
		region := s.Template.Metadata.Labels["edgenode.io/region"]
		if region == "" || s.Selector.MatchLabels["edgenode.io/region"] != region {
			t.Errorf("%s: pod label and selector edgenode.io/region missing or different", name)
		}
		regions[region] = true
		if s.ServiceName != "edgenode-peers" {
			t.Errorf("%s: serviceName %q, want the headless edgenode-peers", name, s.ServiceName)
		}
		if s.PodManagementPolicy != "Parallel" {
			t.Errorf("%s: podManagementPolicy %q: with OrderedReady pod 1 waits for pod 0, which is ready only once the cluster exists", name, s.PodManagementPolicy)
		}
		topo := false
		for _, term := range s.Template.Spec.Affinity.NodeAffinity.Required.Terms {
			for _, e := range term.MatchExpressions {
				if e.Key == "topology.kubernetes.io/region" && len(e.Values) > 0 {
					topo = true
				}
			}
		}
		if !topo {
			t.Errorf("%s: no required node affinity on topology.kubernetes.io/region", name)
		}
		if sc := s.Template.Spec.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.FSGroup == 0 {
			t.Errorf("%s: pod must run as non-root with an fsGroup for its volume", name)
		}
		if len(s.VolumeClaimTemplates) != 1 || s.VolumeClaimTemplates[0].Metadata.Name != "data" {
			t.Errorf("%s: want one volume claim template named data", name)
		}
		if len(s.Template.Spec.Containers) != 1 {
			t.Fatalf("%s: want one container", name)
		}
		c := s.Template.Spec.Containers[0]
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: readiness probe must GET /readyz", name)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: liveness probe must GET /healthz (never /readyz: it fails on every node while any shard has no leader)", name)
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			mounted = mounted || (m.Name == "data" && m.MountPath == "/data")
		}
		if !mounted {
			t.Errorf("%s: data volume not mounted on /data", name)
		}
		env := map[string]envVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		if e := env["EDGENODE_CLUSTER_SECRET"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "edgenode-cluster" {
			t.Errorf("%s: EDGENODE_CLUSTER_SECRET must come from the Secret edgenode-cluster", name)
		}
		if e := env["EDGENODE_JWT_SECRET"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "edgenode-cluster" || e.ValueFrom.SecretKeyRef.Optional {
			t.Errorf("%s: EDGENODE_JWT_SECRET must come from the Secret edgenode-cluster, not optionally (a node of a cluster refuses to start without it)", name)
		}
		if env["EDGENODE_REGION"].Value != region {
			t.Errorf("%s: EDGENODE_REGION %q, pod label %q", name, env["EDGENODE_REGION"].Value, region)
		}
		if !strings.Contains(env["EDGENODE_JOIN"].Value, ".edgenode-peers.") {
			t.Errorf("%s: EDGENODE_JOIN %q does not name pods of the headless service", name, env["EDGENODE_JOIN"].Value)
		}
		for _, v := range []string{"EDGENODE_NODE_ID", "EDGENODE_ADVERTISE_ADDR", "EDGENODE_DATA_DIR"} {
			if _, ok := env[v]; !ok {
				t.Errorf("%s: %s not set", name, v)
			}
		}
		expects = append(expects, env["EDGENODE_BOOTSTRAP_EXPECT"].Value)
	}
	if len(regions) != 3 || len(byKind["StatefulSet"]) != 3 {
		t.Errorf("want three StatefulSets in three regions, got %d in %v", len(byKind["StatefulSet"]), regions)
	}
	for _, e := range expects {
		if e != strconv.Itoa(total) {
			t.Errorf("EDGENODE_BOOTSTRAP_EXPECT %q, but the StatefulSets have %d replicas in all", e, total)
		}
	}
}

func mustJSON(t *testing.T, yaml []byte) []byte {
	t.Helper()
	return run(t, yaml, "kubectl", "annotate", "--local", "-f", "-", "-o", "json", "edgenode.io/checked=true")
}

// ---- compose ----

func TestComposeFileParses(t *testing.T) {
	compose := composeCommand()
	if compose == nil {
		t.Skip("neither docker-compose nor the docker compose plugin is installed")
	}
	cmd := exec.Command(compose[0], append(compose[1:], "-f", "compose/docker-compose.yml", "config", "-q")...)
	cmd.Env = append(os.Environ(), "EDGENODE_ENV_FILE=cluster.env.example")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
}

// ---- Prometheus and Grafana ----

var metricRE = regexp.MustCompile(`\b(edgenode_[a-z0-9_]+|process_[a-z0-9_]+|up)\b`)

// registeredMetrics is every edgenode_* name the node's code registers.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`"(edgenode_[a-z0-9_]+)"`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "deploy" || d.Name() == "e2e" || strings.HasPrefix(d.Name(), ".")) && path != ".." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func metricBase(name string) string {
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, s); ok {
			return b
		}
	}
	return name
}

// checkNames fails for every edgenode_* name in text that the code does
// not register (and that is not pending).
func checkNames(t *testing.T, file, text string, registered map[string]bool) []string {
	t.Helper()
	var used []string
	for _, m := range metricRE.FindAllString(text, -1) {
		if !strings.HasPrefix(m, "edgenode_") || slices.Contains(used, m) {
			continue
		}
		used = append(used, m)
		if !registered[metricBase(m)] && !pendingMetrics[m] {
			t.Errorf("%s uses %s, which no code registers", file, m)
		}
	}
	return used
}

func TestPrometheusRules(t *testing.T) {
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	used := checkNames(t, "alerts.yml", string(rules), registeredMetrics(t))
	// The list: no leader for a shard, push failures, queue depth,
	// socket count, p99 latency.
	for _, want := range []string{"edgenode_shards_without_leader", "edgenode_push_requests_total", "edgenode_queued_messages", "edgenode_sockets", "histogram_quantile(0.99"} {
		if !strings.Contains(string(rules), want) {
			t.Errorf("alerts.yml has no rule over %s", want)
		}
	}
	t.Logf("alerts.yml uses %v", used)
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed: names checked, syntax not")
	}
	run(t, nil, "promtool", "check", "rules", "prometheus/alerts.yml")
	cmd := exec.Command("promtool", "check", "config", "prometheus.yml")
	cmd.Dir = "prometheus"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/edgenode.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || len(d.Panels) == 0 {
		t.Fatal("dashboard has no uid or no panels")
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("panel %q: unbalanced parentheses in %s", p.Title, tg.Expr)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	checkNames(t, "edgenode.json", all, registeredMetrics(t))
	for _, want := range []string{"edgenode_shards_without_leader", "edgenode_push_requests_total", "edgenode_queued_messages", "edgenode_sockets", "histogram_quantile(0.99"} {
		if !strings.Contains(all, want) {
			t.Errorf("the dashboard has no panel over %s", want)
		}
	}
}
