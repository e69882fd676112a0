package ui

import (
	"context"
	"time"

	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
)

// Identity is whom a call to omertad is made for: the browser's session
// (its cookie, verbatim) or an API token passed through, the session's
// CSRF token on a state-changing call, and the browser's address. omertad
// decides what that identity may do; the console only carries it.
type Identity struct {
	Session    string
	Bearer     string
	CSRF       string
	ClientAddr string
}

// Backend hands out the calls to omertad made for one identity.
type Backend interface {
	For(id Identity) API
}

// API is every call the console makes to omertad: a subset of
// *apiclient.Client's methods, so that the shared client is the
// implementation (see ClientBackend) and tests can put a counting or
// failing wrapper around it.
type API interface {
	SetupState(ctx context.Context) (apitype.SetupState, error)
	Setup(ctx context.Context, r apitype.SetupRequest) (apitype.Session, error)
	Login(ctx context.Context, username, password string) (apitype.Session, error)
	Logout(ctx context.Context) error
	Identity(ctx context.Context) (apitype.Whoami, error)
	CompleteReset(ctx context.Context, token, password string) error
	Version(ctx context.Context) (apitype.Version, error)
	OpenAPI(ctx context.Context) ([]byte, error)

	Users(ctx context.Context) ([]apitype.User, error)
	User(ctx context.Context, name string) (apitype.User, error)
	CreateUser(ctx context.Context, u apitype.UserCreate) (apitype.UserCreated, error)
	DisableUser(ctx context.Context, name string) (apitype.User, error)
	EnableUser(ctx context.Context, name string) (apitype.User, error)
	ResetUser(ctx context.Context, name string) (apitype.ResetLink, error)
	SetUserRole(ctx context.Context, name, role string) (apitype.User, error)
	Tokens(ctx context.Context) ([]apitype.Token, error)
	CreateToken(ctx context.Context, t apitype.TokenCreate) (apitype.TokenIssued, error)
	RevokeToken(ctx context.Context, id int64) error

	Audit(ctx context.Context, after int64, limit int) ([]apitype.AuditRecord, error)
	AuditStatus(ctx context.Context) (apitype.AuditStatus, error)
	Probe(ctx context.Context) (apitype.ProbeView, error)
	GPUs(ctx context.Context) (apitype.GPUList, error)
	Models(ctx context.Context) (apitype.ModelList, error)
	GPU(ctx context.Context, uuid string) (apitype.GPUView, error)
	Drift(ctx context.Context, limit int) (apitype.DriftView, error)
	Report(ctx context.Context) (apitype.ReportView, error)
	ReportHTML(ctx context.Context) ([]byte, error)

	Catalog(ctx context.Context) (apitype.CatalogList, error)
	CatalogEntry(ctx context.Context, id string) (apitype.CatalogEntryView, error)
	ImportCatalog(ctx context.Context, req apitype.CatalogImport) (apitype.CatalogImported, error)
	Images(ctx context.Context) (apitype.ImageList, error)
	Agents(ctx context.Context) (apitype.AgentList, error)
	AgentsSummary(ctx context.Context) (apitype.AgentsSummary, error)
	Dashboard(ctx context.Context) (apitype.Dashboard, error)
	Agent(ctx context.Context, id string) (apitype.Agent, error)
	DeployAgent(ctx context.Context, req apitype.AgentDeploy) (apitype.Agent, error)
	PatchAgent(ctx context.Context, id string, req apitype.AgentPatch) (apitype.Agent, error)
	AgentAction(ctx context.Context, id, action string) (apitype.Agent, error)
	DeleteAgent(ctx context.Context, id string, purge bool) error
	AgentLogs(ctx context.Context, id string, tail int) ([]byte, error)
	FollowAgentLogs(ctx context.Context, id string, tail int) (*apiclient.LogStream, error)
	RunTask(ctx context.Context, agent string, req apitype.TaskCreate, wait time.Duration) (apitype.Task, error)
	Tasks(ctx context.Context, agent string, limit int) (apitype.TaskList, error)
	Task(ctx context.Context, id string) (apitype.Task, error)
	CancelTask(ctx context.Context, id string) (apitype.Task, error)
	Events(ctx context.Context, f apiclient.EventFilter) (*apiclient.EventStream, error)

	policyAPI // pages_policy.go
}

var _ API = (*apiclient.Client)(nil)

// ClientBackend is the Backend over the shared API client: each identity
// gets a view of the one client (its connections shared) that carries the
// contract's headers.
type ClientBackend struct{ C *apiclient.Client }

// For returns the client as id.
func (b ClientBackend) For(id Identity) API {
	return b.C.As(apiclient.Credentials{Session: id.Session, CSRF: id.CSRF, Bearer: id.Bearer, ClientAddr: id.ClientAddr})
}

// can reports whether the caller's role allows action, from the actions
// omertad listed for it.
func can(w *apitype.Whoami, action string) bool {
	if w == nil {
		return false
	}
	for _, a := range w.Actions {
		if a == action {
			return true
		}
	}
	return false
}
