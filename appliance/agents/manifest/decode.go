package manifest

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"time"
)

// hostAccess names keys that other container formats use to reach the
// host, with the reason each is refused. Decoding is strict, so any unknown
// key is refused anyway; these get a message that says why.
var hostAccess = map[string]string{
	"privileged":               "a privileged container is root on the host",
	"hostNetwork":              "the host's network namespace is not shared with agents",
	"hostPID":                  "the host's process namespace is not shared with agents",
	"hostIPC":                  "the host's IPC namespace is not shared with agents",
	"hostUsers":                "agents never run in the host's user namespace",
	"hostPath":                 "agents get no host paths; use spec.volumes (directories under the agent's own state)",
	"hostPort":                 "agents do not bind host ports; spec.ports are reached through the console",
	"capabilities":             "agents run with no Linux capabilities",
	"capAdd":                   "agents run with no Linux capabilities",
	"cap_add":                  "agents run with no Linux capabilities",
	"addCapabilities":          "agents run with no Linux capabilities",
	"securityContext":          "the runtime sets the security context (non-root, no capabilities, no-new-privileges)",
	"allowPrivilegeEscalation": "no-new-privileges is always set",
	"noNewPrivileges":          "no-new-privileges is always set",
	"readOnlyRootFilesystem":   "the root filesystem is always read-only",
	"devices":                  "agents get no host devices (GPUs come through spec.resources.gpus)",
	"mounts":                   "agents get no host mounts; use spec.volumes",
	"sysctls":                  "agents cannot change kernel settings",
	"seccomp":                  "containerd's default seccomp profile always applies",
	"seccompProfile":           "containerd's default seccomp profile always applies",
	"apparmor":                 "the runtime chooses the AppArmor profile",
	"apparmorProfile":          "the runtime chooses the AppArmor profile",
	"selinux":                  "the runtime chooses the SELinux label",
	"user":                     "the runtime chooses a non-root uid",
	"runAsUser":                "the runtime chooses a non-root uid",
	"runAsRoot":                "agents never run as root",
	"runAsGroup":               "the runtime chooses the gid",
	"namespaces":               "every agent gets its own namespaces; host namespaces are never shared",
	"cgroupParent":             "the runtime places the agent's cgroup",
	"runtime":                  "spec.isolation chooses the runtime (container or sandbox)",
}

var (
	durationType = reflect.TypeOf(Duration(0))
	quantityType = reflect.TypeOf(Quantity(""))
	rawMapType   = reflect.TypeOf(map[string]any(nil))
)

// decoder fills Go values from a JSON tree, recording every mismatch with
// its field path instead of stopping at the first.
type decoder struct {
	probs Problems
}

func (d *decoder) decode(path string, node any, v reflect.Value) {
	if node == nil {
		return // an empty value is the same as an absent one
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(path, node, v)
	case t == quantityType:
		d.quantity(path, node, v)
	case t == rawMapType:
		d.rawMap(path, node, v)
	case t.Kind() == reflect.Pointer:
		e := reflect.New(t.Elem())
		d.decode(path, node, e.Elem())
		v.Set(e)
	case t.Kind() == reflect.Struct:
		d.object(path, node, v)
	case t.Kind() == reflect.Slice:
		d.list(path, node, v)
	default:
		d.scalar(path, node, v)
	}
}

func (d *decoder) object(path string, node any, v reflect.Value) {
	m, ok := node.(map[string]any)
	if !ok {
		d.probs.add(path, CodeType, "must be a mapping, not %s", kindOf(node))
		return
	}
	fields := fieldsOf(v.Type())
	var unknown []string
	for k := range m {
		if _, ok := fields[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	for i := 0; i < v.NumField(); i++ {
		name := jsonName(v.Type().Field(i))
		if e, ok := m[name]; ok {
			d.decode(Key(path, name), e, v.Field(i))
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		if why, ok := hostAccess[k]; ok {
			d.probs.add(Key(path, k), CodeHostAccess, "refused: asks for host access (%s)", why)
			continue
		}
		d.probs.add(Key(path, k), CodeUnknownField, "unknown field; %s takes %s", describe(path), strings.Join(sortedKeys(fields), ", "))
	}
}

func describe(path string) string {
	if path == "" {
		return "a manifest"
	}
	return path
}

func (d *decoder) list(path string, node any, v reflect.Value) {
	l, ok := node.([]any)
	if !ok {
		d.probs.add(path, CodeType, "must be a list, not %s", kindOf(node))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(l), len(l))
	for i, e := range l {
		if e == nil {
			d.probs.add(Index(path, i), CodeType, "must not be empty")
			continue
		}
		d.decode(Index(path, i), e, s.Index(i))
	}
	v.Set(s)
}

func (d *decoder) scalar(path string, node any, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		s, ok := node.(string)
		if !ok {
			d.probs.add(path, CodeType, "must be a string, not %s%s", kindOf(node), quoteHint(node))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := node.(bool)
		if !ok {
			d.probs.add(path, CodeType, "must be true or false, not %s", kindOf(node))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := node.(json.Number)
		i, err := n.Int64()
		if !ok || err != nil || v.OverflowInt(i) {
			d.probs.add(path, CodeType, "must be a whole number, not %s", kindOf(node))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		n, ok := node.(json.Number)
		f, err := n.Float64()
		if !ok || err != nil {
			d.probs.add(path, CodeType, "must be a number, not %s", kindOf(node))
			return
		}
		v.SetFloat(f)
	default:
		panic("manifest: no decoder for " + v.Type().String()) // a programming error, caught by the tests
	}
}

func quoteHint(node any) string {
	if _, ok := node.(json.Number); ok {
		return " (quote it)"
	}
	return ""
}

func (d *decoder) duration(path string, node any, v reflect.Value) {
	s, ok := node.(string)
	if !ok {
		d.probs.add(path, CodeType, "must be a duration such as \"30s\" or \"5m\", not %s", kindOf(node))
		return
	}
	t, err := time.ParseDuration(s)
	if err != nil {
		d.probs.add(path, CodeInvalid, "%s is not a duration such as \"30s\" or \"5m\"", quote(s))
		return
	}
	v.SetInt(int64(t))
}

func (d *decoder) quantity(path string, node any, v reflect.Value) {
	switch x := node.(type) {
	case string:
		v.SetString(x)
	case json.Number:
		v.SetString(x.String())
	default:
		d.probs.add(path, CodeType, "must be a quantity such as \"500m\" or \"256Mi\", not %s", kindOf(node))
	}
}

func (d *decoder) rawMap(path string, node any, v reflect.Value) {
	m, ok := node.(map[string]any)
	if !ok {
		d.probs.add(path, CodeType, "must be a mapping, not %s", kindOf(node))
		return
	}
	v.Set(reflect.ValueOf(m))
}

func fieldsOf(t reflect.Type) map[string]bool {
	f := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f[jsonName(t.Field(i))] = true
	}
	return f
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func sortedKeys(m map[string]bool) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// kindOf names a JSON value's kind for a message.
func kindOf(v any) string {
	switch x := v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case nil:
		return "empty"
	}
	return "a value"
}

// HostAccess reports whether key is one that other container formats use to
// reach the host, and why agents never get it. Importers of other formats
// refuse such keys rather than drop them.
func HostAccess(key string) (string, bool) {
	why, ok := hostAccess[key]
	return why, ok
}
