package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The ask command makes this image a gateway client too: an agent in
// network mode gateway whose task (/agent ask) posts its input, an
// OpenAI chat completion request, to the model gateway and prints the
// answer. It holds no key: the gateway knows the agent by its address.
const (
	defaultGatewayURL = "http://10.88.0.1:8080/v1"
	maxAskInput       = 1 << 20
	maxAskAnswer      = 4 << 20
	askTimeout        = 2 * time.Minute
)

// askURL is OPENAI_BASE_URL (an http or https URL up to /v1), or the
// agents' gateway.
func askURL(getenv func(string) string) (string, error) {
	base := getenv("OPENAI_BASE_URL")
	if base == "" {
		base = defaultGatewayURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
		return "", fmt.Errorf("OPENAI_BASE_URL: %q is not an http(s) base URL", base)
	}
	return strings.TrimRight(base, "/") + "/chat/completions", nil
}

// ask posts the request read from in (at most 1 MiB) and copies the
// answer to out (at most 4 MiB); an answer other than 2xx is an error
// after it is copied, so that the refusal's body is seen.
func ask(ctx context.Context, endpoint string, in io.Reader, out io.Writer) error {
	body, err := io.ReadAll(io.LimitReader(in, maxAskInput+1))
	if err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	if len(body) > maxAskInput {
		return fmt.Errorf("the request is over %d bytes", maxAskInput)
	}
	ctx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("asking %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return fmt.Errorf("asking %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(out, io.LimitReader(resp.Body, maxAskAnswer+1))
	switch {
	case err != nil:
		return fmt.Errorf("reading the answer: %w", err)
	case n > maxAskAnswer:
		return fmt.Errorf("the answer is over %d bytes", maxAskAnswer)
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("%s answered %s", endpoint, resp.Status)
	}
	return nil
}
