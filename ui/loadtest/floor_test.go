package loadtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/gofiber/fiber/v2"

	"github.com/omertaos/omertaos/ui"
)

// runFloor is the floor role: a bare Fiber app over TLS (the console's
// TLS settings and certificate) that answers /page and /json with bodies
// of the sizes the console's dashboard and agent list had. Nothing is
// computed per request: this is the cost of HTTPS and Fiber alone.
func runFloor() error {
	conf, _, err := ui.TLSConfig(os.Getenv(envCert), os.Getenv(envKey))
	if err != nil {
		return err
	}
	page, err := body(envPageSize, "text/html")
	if err != nil {
		return err
	}
	js, err := body(envJSONSize, "application/json")
	if err != nil {
		return err
	}
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/page", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
		return c.Send(page)
	})
	app.Get("/json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(js)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("floor listening on %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); app.Shutdown() }()
	return app.Listener(tls.NewListener(ln, conf))
}

// body is n bytes (n from the environment variable name) of filler.
func body(name, kind string) ([]byte, error) {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n < 1 || n > 64<<20 {
		return nil, fmt.Errorf("%s=%q: want a size in bytes", name, os.Getenv(name))
	}
	fill := []byte("<p>floor</p>\n")
	if kind == "application/json" {
		fill = []byte(`{"floor":true}`)
	}
	return bytes.Repeat(fill, n/len(fill)+1)[:n], nil
}
