package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/omertaos/omertaos/appliance/agents/manifest"
	"github.com/omertaos/omertaos/appliance/apiclient"
	"github.com/omertaos/omertaos/appliance/apitype"
	"github.com/omertaos/omertaos/appliance/safeio"
	"github.com/omertaos/omertaos/appliance/terminal"
)

// Exit statuses of `omerta agents task`.
const (
	exitTaskFailed  exitCode = 1 // FAILED, TIMED_OUT or CANCELED
	exitTaskRunning exitCode = 2 // still running when --wait ran out
)

// Bounds of what the CLI reads for a request.
const (
	maxSettingsFile = 64 << 10
	maxTaskInput    = 60 << 10 // the API reads bodies of 64 KiB at most
)

func newAgentsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agents",
		Short: "Deploy and manage agents through omertad",
		Long: `Deploy catalog entries as agents and manage them through omertad's API on
its unix socket (docs/agents-api.md). The CLI presents no session: omertad
serves it as root on the socket, so run it as root.

Secret settings are write-only: give them with --secret KEY=VALUE, or
--secret KEY=@FILE to keep them out of the process list and shell history;
no command shows them again.`,
	}
	cmd.AddCommand(newAgentsListCmd(), newAgentsGetCmd(), newAgentsDeployCmd(), newAgentsPatchCmd(),
		newAgentsVerbCmd(apiclient.ActionDisable, "Stop an agent and keep it stopped"),
		newAgentsVerbCmd(apiclient.ActionEnable, "Start a disabled agent (or one in crash-loop)"),
		newAgentsVerbCmd(apiclient.ActionRestart, "Restart an agent"),
		newAgentsDeleteCmd(), newAgentsLogsCmd(), newAgentsTaskCmd(), newAgentsTasksCmd())
	return cmd
}

func newAgentsListCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the agents with their state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Agents(cmd.Context())
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), l)
			}
			t := newTable(cmd.OutOrStdout(), 48, "ID", "NAME", "STATE", "DESIRED", "GEN", "RESTARTS", "IMAGE")
			for _, a := range l.Agents {
				t.row(a.ID, a.Name, a.Status.State, a.Desired, itoa(a.Generation), itoa(a.Status.Restarts), imageText(a.Image))
			}
			return t.flush()
		},
	}
	f.add(cmd, true)
	return cmd
}

func imageText(i *apitype.ImageRef) string {
	if i == nil {
		return ""
	}
	if i.Digest != "" {
		return i.Ref + "@" + shortDigest(i.Digest)
	}
	return i.Ref
}

func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func newAgentsGetCmd() *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show one agent: its state, settings (secrets hidden) and image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.Agent(cmd.Context(), args[0])
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			return printAgent(cmd.OutOrStdout(), a)
		},
	}
	f.add(cmd, true)
	return cmd
}

func printAgent(w io.Writer, a apitype.Agent) error {
	t := newTable(w, 0, "FIELD", "VALUE")
	st := a.Status
	t.row("id", a.ID)
	t.row("name", a.Name)
	t.row("image", imageText(a.Image))
	t.row("isolation", a.Isolation)
	t.row("desired", a.Desired)
	t.row("state", st.State)
	t.row("reason", st.Reason)
	t.row("container", st.Container)
	t.row("generation", itoa(a.Generation))
	t.row("restarts", itoa(st.Restarts))
	t.row("oom kills", itoa(st.OOMKills))
	if st.LastExitCode != nil {
		t.row("last exit", fmt.Sprintf("%d at %s", *st.LastExitCode, timeText(st.LastExitAt)))
	}
	if st.NextStartAt != nil {
		t.row("next start", timeText(st.NextStartAt))
	}
	if st.CrashLoopSince != nil {
		t.row("crash loop since", timeText(st.CrashLoopSince))
	}
	if a.PatchPending {
		t.row("patch", "pending: the previous generation runs until the new one does")
	}
	keys := make([]string, 0, len(a.Config))
	for k := range a.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := json.Marshal(a.Config[k])
		t.row("config."+k, string(v))
	}
	t.row("secrets set", strings.Join(a.SecretKeys, " "))
	t.row("created", a.CreatedAt.UTC().Format(time.RFC3339))
	return t.flush()
}

func timeText(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// settingsFlags are --config, --config-file and --secret.
type settingsFlags struct {
	config  []string
	file    string
	secrets []string
}

func (s *settingsFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&s.config, "config", nil, "a setting KEY=VALUE (VALUE is read as JSON when it is JSON, else as text); repeatable")
	cmd.Flags().StringVar(&s.file, "config-file", "", "settings from a YAML or JSON file holding one object (--config overrides them)")
	cmd.Flags().StringArrayVar(&s.secrets, "secret", nil, "a secret setting KEY=VALUE, or KEY=@FILE to read it from a file; repeatable")
}

// parse returns the settings and secrets the flags give.
func (s *settingsFlags) parse() (config, secrets map[string]any, err error) {
	config = map[string]any{}
	if s.file != "" {
		if config, err = readSettingsFile(s.file); err != nil {
			return nil, nil, err
		}
	}
	for _, kv := range s.config {
		k, v, err := splitSetting("--config", kv)
		if err != nil {
			return nil, nil, err
		}
		config[k] = settingValue(v)
	}
	secrets = map[string]any{}
	for _, kv := range s.secrets {
		k, v, err := splitSetting("--secret", kv)
		if err != nil {
			return nil, nil, err
		}
		if strings.HasPrefix(v, "@") {
			b, err := safeio.ReadFile(v[1:], maxSettingsFile)
			if err != nil {
				return nil, nil, fmt.Errorf("--secret %s: %w", terminal.Escape(k), err)
			}
			v = strings.TrimRight(string(b), "\r\n")
		}
		secrets[k] = v
	}
	if len(config) == 0 {
		config = nil
	}
	if len(secrets) == 0 {
		secrets = nil
	}
	return config, secrets, nil
}

func splitSetting(flag, kv string) (string, string, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		// Never echo the value: it may be a secret.
		return "", "", fmt.Errorf("%s: expected KEY=VALUE", flag)
	}
	return k, v, nil
}

// settingValue is v as JSON when it is a JSON value, else v as text:
// --config replicas=3 gives a number, --config mode=fast a string.
func settingValue(v string) any {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err == nil && !dec.More() {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			return out
		}
	}
	return v
}

func readSettingsFile(path string) (map[string]any, error) {
	data, err := safeio.ReadFile(path, maxSettingsFile)
	if err != nil {
		return nil, fmt.Errorf("--config-file: %w", err)
	}
	lim := manifest.Limits()
	lim.MaxBytes = maxSettingsFile
	tree, err := manifest.ParseTree(data, lim)
	if err != nil {
		return nil, fmt.Errorf("--config-file %s: %s", terminal.Escape(path), terminal.Escape(err.Error()))
	}
	m, ok := tree.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("--config-file %s: must hold one object of settings", terminal.Escape(path))
	}
	return m, nil
}

func newAgentsDeployCmd() *cobra.Command {
	var (
		f      apiFlags
		s      settingsFlags
		id     string
		tenant string
	)
	cmd := &cobra.Command{
		Use:   "deploy ENTRY",
		Short: "Deploy a catalog entry as an agent",
		Long: `deploy runs catalog entry ENTRY (see omerta catalog list) as an agent, with
the settings given. --id runs it under another id, to run one entry twice;
--tenant deploys it into a tenant other than "default". omertad checks
the settings against the entry's configSchema and the policies, records
the agent, and starts its container; the reconciler keeps it running from
then on per its restart policy.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			config, secrets, err := s.parse()
			if err != nil {
				return err
			}
			c, err := f.client(5 * time.Minute)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.DeployAgent(cmd.Context(), apitype.AgentDeploy{Entry: args[0], ID: id, Tenant: tenant, Config: config, Secrets: secrets})
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s (generation %d): %s\n", terminal.Escape(a.ID), a.Generation, terminal.Escape(a.Status.State))
			return nil
		},
	}
	f.add(cmd, true)
	s.add(cmd)
	cmd.Flags().StringVar(&id, "id", "", "the agent's id (default: the entry's)")
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant the agent joins (default: default); its quotas and policies apply")
	return cmd
}

func newAgentsPatchCmd() *cobra.Command {
	var (
		f     apiFlags
		s     settingsFlags
		unset []string
		res   apitype.Resources
	)
	cmd := &cobra.Command{
		Use:   "patch ID",
		Short: "Change an agent's settings or resources; it is recreated",
		Long: `patch merges the settings given into the agent's (--unset removes one) and
replaces the resources given. The agent is recreated: its current container
keeps running until the new one runs, and stays if the new one fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			config, secrets, err := s.parse()
			if err != nil {
				return err
			}
			for _, k := range unset {
				if config == nil {
					config = map[string]any{}
				}
				config[k] = nil
			}
			req := apitype.AgentPatch{Config: config, Secrets: secrets}
			if res != (apitype.Resources{}) {
				req.Resources = &res
			}
			c, err := f.client(5 * time.Minute)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.PatchAgent(cmd.Context(), args[0], req)
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "patched %s (generation %d): %s\n", terminal.Escape(a.ID), a.Generation, terminal.Escape(a.Status.State))
			return nil
		},
	}
	f.add(cmd, true)
	s.add(cmd)
	cmd.Flags().StringArrayVar(&unset, "unset", nil, "remove a setting; repeatable")
	cmd.Flags().StringVar(&res.CPU, "cpu", "", `CPU limit ("500m", "2")`)
	cmd.Flags().StringVar(&res.Memory, "memory", "", `memory limit ("256Mi", "1Gi")`)
	cmd.Flags().IntVar(&res.PIDs, "pids", 0, "process limit")
	return cmd
}

func newAgentsVerbCmd(verb, short string) *cobra.Command {
	var f apiFlags
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(2 * time.Minute)
			if err != nil {
				return err
			}
			defer c.Close()
			a, err := c.AgentAction(cmd.Context(), args[0], verb)
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), a)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: desired %s, %s\n", terminal.Escape(a.ID), terminal.Escape(a.Desired), terminal.Escape(a.Status.State))
			return nil
		},
	}
	f.add(cmd, true)
	return cmd
}

func newAgentsDeleteCmd() *cobra.Command {
	var (
		f     apiFlags
		purge bool
	)
	cmd := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an agent (its data is kept unless --purge)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(2 * time.Minute)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteAgent(cmd.Context(), args[0], purge); err != nil {
				return explain(err)
			}
			what := "its data is kept"
			if purge {
				what = "its data and logs are removed"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleting %s; %s\n", terminal.Escape(args[0]), what)
			return nil
		},
	}
	f.add(cmd, false)
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the agent's data directory and logs")
	return cmd
}

func newAgentsLogsCmd() *cobra.Command {
	var (
		f      apiFlags
		tail   int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print an agent's log (what its process wrote); -f follows it",
		Long: `logs prints the last --tail lines of the agent's log. With -f it then
prints what the agent writes until interrupted. The agent's text is shown
with control characters escaped.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			out := terminal.NewWriter(cmd.OutOrStdout())
			if !follow {
				b, err := c.AgentLogs(cmd.Context(), args[0], tail)
				if err != nil {
					return explain(err)
				}
				_, err = out.Write(b)
				return err
			}
			return followLogs(cmd, c, args[0], tail, out)
		},
	}
	f.add(cmd, false)
	cmd.Flags().IntVar(&tail, "tail", apitype.LogTailDefault, fmt.Sprintf("lines from the end to show (1 to %d)", apitype.LogTailMax))
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what the agent writes")
	return cmd
}

func followLogs(cmd *cobra.Command, c *apiclient.Client, id string, tail int, out io.Writer) error {
	s, err := c.FollowAgentLogs(cmd.Context(), id, tail)
	if err != nil {
		return explain(err)
	}
	defer s.Close()
	for {
		text, err := s.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || cmd.Context().Err() != nil {
				return nil
			}
			return fmt.Errorf("following the log of %s: %w", terminal.Escape(id), err)
		}
		if _, err := io.WriteString(out, text); err != nil {
			return err
		}
	}
}

func newAgentsTaskCmd() *cobra.Command {
	var (
		f       apiFlags
		input   string
		key     string
		timeout time.Duration
		wait    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "task ID --input JSON|-",
		Short: "Run one task on a running agent and print its result",
		Long: `task runs the agent's task command with --input (JSON; - reads it from
standard input) on its standard input, waits up to --wait for it to end and
prints its output: JSON indented, anything else as text.

Exit status:
  0  the task succeeded
  1  it failed, timed out or was cancelled (its error on standard error)
  2  it was still running when --wait ran out (see omerta agents tasks ID)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := taskInput(cmd, input)
			if err != nil {
				return err
			}
			c, err := f.client(wait + time.Minute)
			if err != nil {
				return err
			}
			defer c.Close()
			req := apitype.TaskCreate{Input: in, IdempotencyKey: key}
			if timeout > 0 {
				req.Timeout = timeout.String()
			}
			t, err := c.RunTask(cmd.Context(), args[0], req, wait)
			if err != nil {
				return explain(err)
			}
			return printTaskResult(cmd, t, f.json)
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&input, "input", "", "the task's JSON input, or - to read it from standard input")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "run the task once only: a repeat with this key returns the first")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "shorten the agent's task timeout")
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for the task to end (at most 10m)")
	cmd.MarkFlagRequired("input")
	return cmd
}

func taskInput(cmd *cobra.Command, input string) (json.RawMessage, error) {
	b := []byte(input)
	if input == "-" {
		var err error
		if b, err = safeio.ReadAll(cmd.InOrStdin(), "standard input", maxTaskInput); err != nil {
			return nil, fmt.Errorf("--input -: %w", err)
		}
	}
	b = bytes.TrimSpace(b)
	if len(b) > maxTaskInput {
		return nil, fmt.Errorf("--input: %d bytes; the API takes at most %d", len(b), maxTaskInput)
	}
	if !json.Valid(b) {
		return nil, errors.New("--input: not JSON")
	}
	return b, nil
}

func printTaskResult(cmd *cobra.Command, t apitype.Task, asJSON bool) error {
	if asJSON {
		if err := printJSON(cmd.OutOrStdout(), t); err != nil {
			return err
		}
	} else if t.State == apitype.TaskSucceeded {
		if err := printOutput(cmd.OutOrStdout(), t); err != nil {
			return err
		}
	}
	errw := cmd.ErrOrStderr()
	if t.Truncated {
		fmt.Fprintf(errw, "task %s: output truncated at the agent's maxOutput\n", terminal.Escape(t.ID))
	}
	switch {
	case t.State == apitype.TaskSucceeded:
		return nil
	case !apitype.TaskFinal(t.State):
		fmt.Fprintf(errw, "task %s is still %s; see omerta agents tasks %s\n", terminal.Escape(t.ID), terminal.Escape(t.State), terminal.Escape(t.Agent))
		return exitTaskRunning
	}
	fmt.Fprintf(errw, "task %s ended %s: %s\n", terminal.Escape(t.ID), terminal.Escape(t.State), terminal.Escape(t.Error))
	return exitTaskFailed
}

func printOutput(w io.Writer, t apitype.Task) error {
	if len(t.Output) > 0 {
		var buf bytes.Buffer
		if err := json.Indent(&buf, t.Output, "", "  "); err == nil {
			buf.WriteByte('\n')
			_, err := w.Write(jsonSafe(buf.Bytes()))
			return err
		}
	}
	_, err := io.WriteString(terminal.NewWriter(w), t.OutputText)
	return err
}

func newAgentsTasksCmd() *cobra.Command {
	var (
		f     apiFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "tasks ID",
		Short: "List an agent's tasks, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client(defaultCallTimeout)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.Tasks(cmd.Context(), args[0], limit)
			if err != nil {
				return explain(err)
			}
			if f.json {
				return printJSON(cmd.OutOrStdout(), l)
			}
			now := time.Now()
			t := newTable(cmd.OutOrStdout(), 60, "ID", "STATE", "CREATED", "TOOK", "EXIT", "ERROR")
			for _, task := range l.Tasks {
				took, exit := "-", "-"
				if task.StartedAt != nil && task.FinishedAt != nil {
					took = task.FinishedAt.Sub(*task.StartedAt).Round(time.Millisecond).String()
				}
				if task.ExitCode != nil {
					exit = itoa(*task.ExitCode)
				}
				t.row(task.ID, task.State, since(task.CreatedAt, now), took, exit, task.Error)
			}
			return t.flush()
		},
	}
	f.add(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", apitype.TaskLimitDefault, "the most tasks to list")
	return cmd
}
