package uitest

import (
	"net/http"
	"slices"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// SetModels sets what GET /api/v1/models answers. Until it is called the
// fake runs no model gateway, as omertad with gateway.enabled false.
func (f *Fake) SetModels(l apitype.ModelList) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l.Models = slices.Clone(l.Models)
	f.models = l
}

func (f *Fake) modelRoutes() {
	f.route("GET /api/v1/models", "policy.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		f.mu.Lock()
		l := f.models
		f.mu.Unlock()
		if l.Models == nil {
			l.Models = []apitype.ModelStatus{}
		}
		writeJSON(w, http.StatusOK, l)
	})
}
