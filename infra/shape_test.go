package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// Every component constructor has one shape: NewX(ctx, name, *XArgs,
// opts...) (*X, error), so a reader finds any of them by the kind's name.
func TestComponentConstructorsAreNewXWithXArgs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("*", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "New") || len(fn.Type.Params.List) < 3 {
				continue
			}
			star, ok := fn.Type.Params.List[2].Type.(*ast.StarExpr)
			if !ok {
				continue
			}
			args, ok := star.X.(*ast.Ident)
			if !ok || !strings.HasSuffix(args.Name, "Args") {
				continue
			}
			kind := strings.TrimSuffix(args.Name, "Args")
			var result string
			if r := fn.Type.Results; r != nil && len(r.List) == 2 {
				if s, ok := r.List[0].Type.(*ast.StarExpr); ok {
					if id, ok := s.X.(*ast.Ident); ok {
						result = id.Name
					}
				}
			}
			checked++
			if fn.Name.Name != "New"+kind || result != kind {
				t.Errorf("%s: %s(…, *%s, …) returns *%s; want New%s(ctx, name, *%sArgs, opts...) (*%s, error)", path, fn.Name.Name, args.Name, result, kind, kind, kind)
			}
		}
	}
	if checked < 10 {
		t.Errorf("checked only %d constructors: the test no longer finds infra's components", checked)
	}
}
