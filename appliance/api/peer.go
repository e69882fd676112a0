package api

import (
	"errors"
	"fmt"
	"net"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/sys/unix"
)

// Peer is the process at the other end of the socket, as the kernel says.
type Peer struct {
	PID uint32 `json:"pid"`
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

const peerKey = "omerta.peer"

// PeerFrom returns the caller's credentials; ok is false only for requests
// that did not come through a unix socket (tests calling the app directly).
func PeerFrom(c *fiber.Ctx) (Peer, bool) {
	p, ok := c.Locals(peerKey).(Peer)
	return p, ok
}

// peerCredentials reads SO_PEERCRED for every request. A unix connection
// whose credentials cannot be read is refused: authorisation later depends on
// them.
func (s *Server) peerCredentials(c *fiber.Ctx) error {
	conn := c.Context().Conn()
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return c.Next()
	}
	p, err := peerOf(uc)
	if err != nil {
		return fiber.NewError(fiber.StatusForbidden, "reading peer credentials: "+err.Error())
	}
	c.Locals(peerKey, p)
	return c.Next()
}

func peerOf(uc *net.UnixConn) (Peer, error) {
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Peer{}, err
	}
	if serr != nil {
		return Peer{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	if cred == nil {
		return Peer{}, errors.New("SO_PEERCRED returned nothing")
	}
	return Peer{PID: uint32(cred.Pid), UID: cred.Uid, GID: cred.Gid}, nil
}
