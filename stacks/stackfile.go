package stacks

import (
	"encoding/json"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// ReadStackFile reads the `config:` map of a Pulumi.<stack>.yaml into raw
// values the way the engine hands them to the program: scalars as strings,
// objects and lists as JSON. Encrypted (`secure:`) values are refused: the
// example files must hold no secrets.
func ReadStackFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", path, err)
	}
	out := map[string]string{}
	for k, v := range doc.Config {
		switch t := v.(type) {
		case nil:
			out[k] = ""
		case string:
			out[k] = t
		case bool, int, float64:
			out[k] = fmt.Sprint(t)
		case map[string]any:
			if _, ok := t["secure"]; ok && len(t) == 1 {
				return nil, fmt.Errorf("%s: %s holds an encrypted secret; example stack files carry placeholders only", path, k)
			}
			j, err := json.Marshal(t)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			out[k] = string(j)
		default:
			j, err := json.Marshal(t)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, k, err)
			}
			out[k] = string(j)
		}
	}
	return out, nil
}
