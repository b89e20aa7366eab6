package testutil

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// NBDDescription asks nbdinfo for the description of the one export a new
// connection to uri gets; it fails the test when nbdinfo fails or lists
// other than one export.
func NBDDescription(t testing.TB, uri string) string {
	t.Helper()
	out, err := exec.Command("nbdinfo", "--json", uri).Output()
	if err != nil {
		t.Fatalf("nbdinfo %s: %v", uri, err)
	}
	var info struct {
		Exports []struct {
			Description string `json:"description"`
		} `json:"exports"`
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info.Exports) != 1 {
		t.Fatalf("nbdinfo --json: %v\n%s", err, out)
	}
	return info.Exports[0].Description
}
