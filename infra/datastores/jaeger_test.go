package datastores

import (
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"pressroom.dev/infra/kube"
)

// jaegerConfig is the part of Jaeger v2's config file the platform relies on.
type jaegerConfig struct {
	Service struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
	Extensions struct {
		Health struct {
			UseV2 bool `yaml:"use_v2"`
			HTTP  struct {
				Endpoint string `yaml:"endpoint"`
				Status   struct {
					Enabled bool   `yaml:"enabled"`
					Path    string `yaml:"path"`
				} `yaml:"status"`
			} `yaml:"http"`
		} `yaml:"healthcheckv2"`
		Storage struct {
			Backends map[string]struct {
				Memory *struct {
					MaxTraces int `yaml:"max_traces"`
				} `yaml:"memory"`
			} `yaml:"backends"`
		} `yaml:"jaeger_storage"`
		Query struct {
			Storage struct {
				Traces string `yaml:"traces"`
			} `yaml:"storage"`
			HTTP struct {
				Endpoint string `yaml:"endpoint"`
			} `yaml:"http"`
		} `yaml:"jaeger_query"`
	} `yaml:"extensions"`
	Receivers struct {
		OTLP struct {
			Protocols map[string]struct {
				Endpoint string `yaml:"endpoint"`
			} `yaml:"protocols"`
		} `yaml:"otlp"`
	} `yaml:"receivers"`
	Processors struct {
		MemoryLimiter struct {
			LimitMiB      int `yaml:"limit_mib"`
			SpikeLimitMiB int `yaml:"spike_limit_mib"`
		} `yaml:"memory_limiter"`
	} `yaml:"processors"`
	Exporters struct {
		Storage struct {
			TraceStorage string `yaml:"trace_storage"`
		} `yaml:"jaeger_storage_exporter"`
	} `yaml:"exporters"`
}

// Jaeger v2's config: OTLP in on 4317/4318 and the UI on 16686 on every
// address (the collector's default is localhost, which the Service cannot
// reach), spans stored in the bounded memory store the query service reads,
// the health check where the probes look, and the trace store sized inside
// the memory limiter, which is inside the container's limit.
func TestJaegerConfigServesOTLPIntoABoundedStore(t *testing.T) {
	var c jaegerConfig
	dec := yaml.NewDecoder(strings.NewReader(JaegerConfig()))
	dec.KnownFields(false)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("config.yaml is not YAML: %v\n%s", err, JaegerConfig())
	}
	for proto, want := range map[string]string{"grpc": "0.0.0.0:4317", "http": "0.0.0.0:4318"} {
		if got := c.Receivers.OTLP.Protocols[proto].Endpoint; got != want {
			t.Errorf("OTLP %s listens on %q, want %q", proto, got, want)
		}
	}
	if got := c.Extensions.Query.HTTP.Endpoint; got != "0.0.0.0:16686" {
		t.Errorf("the UI listens on %q, want 0.0.0.0:16686", got)
	}
	h := c.Extensions.Health
	if !h.UseV2 || !h.HTTP.Status.Enabled || h.HTTP.Status.Path != "/status" || h.HTTP.Endpoint != "0.0.0.0:13133" || JaegerHealthPort != 13133 {
		t.Errorf("healthcheckv2 %+v: want use_v2 and /status on 0.0.0.0:%d, where the probes look", h, JaegerHealthPort)
	}
	p, ok := c.Service.Pipelines["traces"]
	if !ok || strings.Join(p.Receivers, ",") != "otlp" || strings.Join(p.Processors, ",") != "memory_limiter,batch" || strings.Join(p.Exporters, ",") != "jaeger_storage_exporter" {
		t.Errorf("traces pipeline %+v: want otlp -> memory_limiter, batch -> jaeger_storage_exporter", p)
	}
	for _, ext := range []string{"jaeger_storage", "jaeger_query", "healthcheckv2"} {
		if !strings.Contains(" "+strings.Join(c.Service.Extensions, " ")+" ", " "+ext+" ") {
			t.Errorf("extension %s is configured but not enabled in service.extensions %v", ext, c.Service.Extensions)
		}
	}
	store := c.Exporters.Storage.TraceStorage
	b, ok := c.Extensions.Storage.Backends[store]
	if !ok || b.Memory == nil || c.Extensions.Query.Storage.Traces != store {
		t.Fatalf("the exporter writes to %q, the query reads %q, backends %v: want one memory backend for both", store, c.Extensions.Query.Storage.Traces, c.Extensions.Storage.Backends)
	}
	if b.Memory.MaxTraces != jaegerMaxTraces || jaegerMaxTraces <= 0 {
		t.Errorf("max_traces %d, want %d", b.Memory.MaxTraces, jaegerMaxTraces)
	}

	// The budget of datastores.go: 12 KiB a trace plus 50 MiB for Jaeger
	// stays under the limiter's soft limit; the limiter's hard limit stays
	// under GOMEMLIMIT, which is under the container's limit.
	const traceKiB, baseMiB = 12, 50
	ml := c.Processors.MemoryLimiter
	storeMiB := jaegerMaxTraces * traceKiB / 1024
	if soft := ml.LimitMiB - ml.SpikeLimitMiB; storeMiB+baseMiB > soft {
		t.Errorf("%d traces need about %d MiB + %d MiB, above the memory limiter's soft limit %d MiB", jaegerMaxTraces, storeMiB, baseMiB, soft)
	}
	goMem, err := kube.Size{MemLimit: jaegerMemLimit}.GoMemLimit()
	if err != nil {
		t.Fatal(err)
	}
	goMemBytes, err := strconv.ParseInt(goMem, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	limitMiB := int(goMemBytes >> 20)
	if ml.LimitMiB <= 0 || ml.LimitMiB >= limitMiB {
		t.Errorf("memory_limiter limit_mib %d must be below GOMEMLIMIT (%d MiB) so it refuses spans before the runtime struggles", ml.LimitMiB, limitMiB)
	}
}
