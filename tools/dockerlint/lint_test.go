package main

import (
	"context"
	"os"
	"slices"
	"testing"
)

// TestRepositoryDockerfile is the gate: the project's Dockerfile has no
// finding under BuildKit's rules.
func TestRepositoryDockerfile(t *testing.T) {
	dt, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range []map[string]string{nil, {"VERSION": "v1.2.3", "GO_VERSION": "1.26.0"}} {
		got, err := Lint(context.Background(), "Dockerfile", dt, args)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Errorf("Lint(Dockerfile, %v) = %v, want no findings", args, got)
		}
	}
}

// TestLintFindsProblems proves the linter is live: each broken Dockerfile
// yields exactly the rules it breaks, on the right lines.
func TestLintFindsProblems(t *testing.T) {
	tests := []struct {
		name string
		dt   string
		want []Finding
	}{
		{
			name: "clean",
			dt:   "FROM golang:1.26 AS build\nRUN go version\nFROM gcr.io/distroless/static-debian12:nonroot\nCOPY --from=build /go/bin /x\nENTRYPOINT [\"/x\"]\n",
			want: nil,
		},
		{
			name: "stage casing and shell-form CMD",
			dt:   "FROM golang:1.26 as Build\nCMD go version\n",
			want: []Finding{
				{Rule: "StageNameCasing", Line: 1},
				{Rule: "FromAsCasing", Line: 1},
				{Rule: "JSONArgsRecommended", Line: 2},
			},
		},
		{
			name: "undefined variable",
			dt:   "FROM gcr.io/distroless/static-debian12:nonroot\nCOPY $NOPE /x\nENTRYPOINT [\"/x\"]\n",
			want: []Finding{{Rule: "UndefinedVar", Line: 2}},
		},
		{
			name: "legacy ENV and secret in ENV",
			dt:   "FROM gcr.io/distroless/static-debian12:nonroot\nENV API_TOKEN abc\nENTRYPOINT [\"/x\"]\n",
			want: []Finding{
				{Rule: "LegacyKeyValueFormat", Line: 2},
				{Rule: "SecretsUsedInArgOrEnv", Line: 2},
			},
		},
		{
			name: "unknown instruction",
			dt:   "FROM gcr.io/distroless/static-debian12:nonroot\nFROBNICATE /a\n",
			want: []Finding{{Rule: "BuildError", Line: 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Lint(context.Background(), "Dockerfile", []byte(tt.dt), nil)
			if err != nil {
				t.Fatal(err)
			}
			// Details are BuildKit's prose; rule and line are the contract.
			for i := range got {
				got[i].Detail = ""
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Lint(%q) = %v, want %v", tt.dt, got, tt.want)
			}
		})
	}
}
