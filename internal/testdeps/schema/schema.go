// Package schema validates JSON documents against a JSON Schema (draft
// 2020-12, formats asserted) with github.com/santhosh-tekuri/jsonschema.
// Only the overlay's files (testdata/testdeps) import it, for export's
// tests, so no module importing this library loads it.
package schema

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Compile compiles the schema into a function that validates a JSON
// document against it.
func Compile(schema []byte) (func(doc []byte) error, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("the schema is not JSON: %w", err)
	}
	const url = "https://github.com/gdprkit/privacy/export/schema.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // date-time is checked, not only annotated
	if err := c.AddResource(url, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("the schema does not compile: %w", err)
	}
	return func(data []byte) error {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("the document is not JSON: %w", err)
		}
		return sch.Validate(v)
	}, nil
}
