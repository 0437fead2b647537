// The notation CLI that judges holdca's signatures, pinned to v1.3.2.
// scripts/test.sh runs `go install github.com/notaryproject/notation/cmd/notation` here:
// `go install ...@v1.3.2` needs the module proxy's version list, which this
// environment's proxy refuses, and the pinned go.mod/go.sum make the build reproducible.

//go:build tools

package tools

import _ "github.com/notaryproject/notation/cmd/notation"
