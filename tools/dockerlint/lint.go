// Command dockerlint checks a Dockerfile with BuildKit's own lint rules (the
// rules `docker build --check` applies) without a Docker engine or network:
// base images are resolved by a stub that returns a plausible image config
// instead of pulling.
//
//	go run . ../../Dockerfile
//
// It prints every warning and exits 1 when there is any warning or the
// Dockerfile does not parse.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go/v1"
)

// Finding is one lint warning or the build error, with its first line.
type Finding struct {
	Rule   string
	Line   int
	Detail string
}

func (f Finding) String() string {
	return fmt.Sprintf("line %d: %s: %s", f.Line, f.Rule, f.Detail)
}

// Lint runs BuildKit's Dockerfile rules over dt for every stage and returns
// the findings in file order. A Dockerfile that BuildKit cannot convert is
// reported as a finding with rule "BuildError". buildArgs are passed as
// --build-arg values.
func Lint(ctx context.Context, filename string, dt []byte, buildArgs map[string]string) ([]Finding, error) {
	platform := ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	// The source map names the Dockerfile in findings; like BuildKit's own
	// frontend, it points at a local source holding the file.
	src := llb.Local("dockerfile")
	def, err := src.Marshal(ctx)
	if err != nil {
		return nil, fmt.Errorf("dockerlint: source map: %w", err)
	}
	sm := llb.NewSourceMap(&src, filename, "Dockerfile", dt)
	sm.Definition = def
	res, err := dockerfile2llb.DockerfileLint(ctx, dt, dockerfile2llb.ConvertOpt{
		Config: dockerui.Config{
			BuildArgs:       buildArgs,
			TargetPlatforms: []ocispecs.Platform{platform},
			BuildPlatforms:  []ocispecs.Platform{platform},
		},
		SourceMap:    sm,
		MetaResolver: stubResolver{},
	})
	if err != nil {
		return nil, fmt.Errorf("dockerlint: %w", err)
	}
	var out []Finding
	for _, w := range res.Warnings {
		f := Finding{Rule: w.RuleName, Detail: w.Detail}
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			f.Line = int(w.Location.Ranges[0].Start.Line)
		}
		out = append(out, f)
	}
	if res.Error != nil {
		f := Finding{Rule: "BuildError", Detail: res.Error.Message}
		if len(res.Error.Location.Ranges) > 0 {
			f.Line = int(res.Error.Location.Ranges[0].Start.Line)
		}
		out = append(out, f)
	}
	return out, nil
}

// stubResolver answers image config lookups without a registry. The config
// carries the environment the real images declare, so rules that look at the
// base image's variables (UndefinedVar) behave as in a real build.
type stubResolver struct{}

func (stubResolver) ResolveImageConfig(_ context.Context, ref string, opt sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	platform := ocispecs.Platform{OS: "linux", Architecture: "amd64"}
	if opt.ImageOpt != nil && opt.ImageOpt.Platform != nil {
		platform = *opt.ImageOpt.Platform
	}
	cfg := ocispecs.ImageConfig{
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	}
	switch {
	case strings.Contains(ref, "golang"):
		cfg.Env = []string{
			"PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"GOLANG_VERSION=1.26.0",
			"GOTOOLCHAIN=local",
			"GOPATH=/go",
		}
		cfg.WorkingDir = "/go"
		cfg.Cmd = []string{"bash"}
	case strings.Contains(ref, "distroless"):
		cfg.Env = append(cfg.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
		cfg.User = "65532"
		cfg.WorkingDir = "/home/nonroot"
	}
	img := ocispecs.Image{
		Platform: platform,
		Config:   cfg,
		RootFS: ocispecs.RootFS{
			Type: "layers",
			// One layer, so the base is not taken for "scratch".
			DiffIDs: []digest.Digest{digest.FromString(ref)},
		},
	}
	dt, err := json.Marshal(img)
	if err != nil {
		return "", "", nil, err
	}
	return ref, digest.FromBytes(dt), dt, nil
}
