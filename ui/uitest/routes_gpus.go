package uitest

import (
	"net/http"
	"strings"

	"github.com/omertaos/omertaos/appliance/apitype"
)

// SetGPUs sets what GET /api/v1/gpus answers. Until it is called the
// fake is a machine without an NVIDIA driver, as omertad says it.
func (f *Fake) SetGPUs(l apitype.GPUList) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gpus = &l
}

func (f *Fake) gpuRoutes() {
	f.route("GET /api/v1/gpus", "probe.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		writeJSON(w, http.StatusOK, f.gpuList())
	})
	f.route("GET /api/v1/gpus/{uuid}", "probe.read", func(w http.ResponseWriter, r *http.Request, _ principal) {
		l := f.gpuList()
		for _, g := range l.GPUs {
			if strings.EqualFold(g.UUID, r.PathValue("uuid")) {
				writeJSON(w, http.StatusOK, g)
				return
			}
		}
		fail(w, http.StatusNotFound, "no GPU "+r.PathValue("uuid"))
	})
}

func (f *Fake) gpuList() apitype.GPUList {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gpus == nil {
		return apitype.GPUList{Reason: "NVIDIA management library unavailable: libnvidia-ml.so.1 not found", GPUs: []apitype.GPUView{}}
	}
	return *f.gpus
}
